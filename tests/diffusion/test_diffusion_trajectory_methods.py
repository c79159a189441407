"""Trajectory distillation methods (progressive, consistency, BOOT) on a 2-D toy with a tiny MLP teacher: the
properties that break when a method is wrong (targets, boundaries, round schedule, data-freeness, seeding)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from kdlab.diffusion import MLPDenoiser, NoiseSchedule, load_diffusion_data, sample_teacher, train_denoiser
from kdlab.diffusion.methods import boot, consistency, progressive  # noqa: F401  (registers the methods)
from kdlab.diffusion.methods.base import DIFFUSION_METHODS, create_diffusion_method
from kdlab.diffusion.metrics import sliced_wasserstein
from kdlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
NULL = 8  # eight_gaussians has 8 classes: label 8 is the null label (unconditional)


@pytest.fixture(scope="module")
def toy():
    """eight_gaussians, a 300-step MLP teacher, fixed noise and the teacher's 50-step unconditional samples there."""
    data = load_diffusion_data("eight_gaussians", seed=0, n_train=2000)
    sch = NoiseSchedule()
    torch.manual_seed(0)  # the MLP's initial weights
    teacher = train_denoiser(MLPDenoiser(2, data.num_classes, width=64, depth=2), data, sch, steps=300,
                             batch_size=256, lr=2e-3, seed=0)
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    return data, sch, teacher, z, sample_teacher(teacher, z, None, steps=50).x


def make(name, toy, hp=None, seed=0, **kw):
    data, sch, teacher = toy[:3]
    return create_diffusion_method(name, hp, teacher, sch, data, seed=seed, lr=2e-3, batch_size=128, **kw)


def train(m, toy, steps, seed=0):
    """``steps`` updates on unconditional batches (data-free methods get x0=None); the loss dicts."""
    data, g = toy[0], torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x0 = None if m.data_free else data.train[torch.randint(0, len(data.train), (128,), generator=g)]
        out.append(m.train_step(x0, None if m.data_free else torch.full((128,), NULL)))
    return out


def test_registered_with_paper_and_simplification():
    for name in ("progressive", "consistency", "boot"):
        cls = DIFFUSION_METHODS.get(name)
        assert cls.cite and "20" in cls.cite and cls.simplification, name
    assert DIFFUSION_METHODS.get("consistency").kind == "renoise" and DIFFUSION_METHODS.get("boot").data_free


@pytest.mark.parametrize("name", ["progressive", "consistency", "boot"])
def test_same_seed_same_losses(toy, name):
    hp = {"start_steps": 4, "round_steps": 2} if name == "progressive" else None
    a, b, c = (train(make(name, toy, hp, seed=s), toy, 5) for s in (0, 0, 1))
    assert a == b and a != c


@pytest.mark.parametrize("name", ["progressive", "consistency", "boot"])
def test_resume_from_state_dict_continues_identically(toy, name):
    hp = {"start_steps": 4, "round_steps": 2} if name == "progressive" else None  # resumes across a round change
    a = make(name, toy, hp)
    train(a, toy, 3)
    state = copy.deepcopy(a.state_dict())
    rest = train(a, toy, 3, seed=1)
    b = make(name, toy, hp, seed=7)
    b.load_state_dict(state)
    assert train(b, toy, 3, seed=1) == rest


# --------------------------------------------------------------------------------------------- progressive
def test_progressive_round_schedule_halves_steps(toy):
    m = make("progressive", toy, {"start_steps": 16, "target_steps": 2}, total_steps=300)
    assert m.round_schedule() == [(16, 8), (8, 4), (4, 2)] and m.round_steps == 100
    assert [m.round_of(s) for s in (0, 99, 100, 299, 500)] == [0, 0, 1, 2, 2]
    for bad in ({"start_steps": 12, "target_steps": 1}, {"start_steps": 2, "target_steps": 2}):
        with pytest.raises(ConfigError, match="power of two"):
            make("progressive", toy, bad)


def test_progressive_student_becomes_next_rounds_teacher(toy):
    m = make("progressive", toy, {"start_steps": 4, "round_steps": 3})
    teacher_w = {k: v.clone() for k, v in toy[2].state_dict().items()}
    train(m, toy, 3)
    assert all(torch.equal(v, teacher_w[k]) for k, v in m.previous.state_dict().items())
    end_of_round = {k: v.clone() for k, v in m.student.state_dict().items()}
    train(m, toy, 1)
    assert m.current_round == 1
    assert all(torch.equal(v, end_of_round[k]) for k, v in m.previous.state_dict().items())


def test_progressive_one_step_matches_two_teacher_steps(toy):
    _, _, teacher, z, _ = toy
    want = sample_teacher(teacher, z, None, steps=4).x  # the round's target sampler (trailing [999, 749, 499, 249])
    m = make("progressive", toy, {"start_steps": 4, "target_steps": 2}, total_steps=150)
    before = (m.generate(z, None, 2).x - want).square().mean()
    losses = [d["distill"] for d in train(m, toy, 150)]
    after = (m.generate(z, None, 2).x - want).square().mean()
    assert after < 0.01 * before, (before, after)
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])


# --------------------------------------------------------------------------------------------- consistency
def test_consistency_boundary_is_exact(toy):
    m = make("consistency", toy)
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(64, 2)
    assert torch.equal(m.consistency_fn(m.student, x, torch.full((64,), -1.0), None), x)
    # away from the boundary f is (almost exactly) the student's x0 prediction
    t = torch.full((64,), 499.0)
    x0 = m.schedule.x0_eps(x, m.student(x, t, None), t)[0]
    assert torch.allclose(m.consistency_fn(m.student, x, t, None), x0, atol=1e-5)


def test_consistency_self_consistency_error_and_samples_improve(toy):
    data, sch, teacher, z, ref = toy
    m = make("consistency", toy, {"num_steps": 20})
    x0 = data.train[:512]
    i = torch.randint(0, 20, (512,), generator=torch.Generator().manual_seed(5))
    grid = torch.tensor(m.grid, dtype=torch.float32)
    t, t_prev = grid[i], grid[i + 1]
    x_t = sch.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(6)), t)
    x_prev = sch.ddim_step(x_t, teacher(x_t, t, None), t, t_prev)

    @torch.no_grad()
    def gap():  # student's disagreement between adjacent points of one teacher ODE path
        return (m.consistency_fn(m.student, x_t, t, None) - m.consistency_fn(m.student, x_prev, t_prev, None)
                ).square().sum(1).mean()

    x1 = m.generate(z, None, 1).x
    gap0, swd0, err0 = gap(), sliced_wasserstein(x1, ref), (x1 - ref).square().sum(1).mean()
    train(m, toy, 200)
    x1 = m.generate(z, None, 1).x  # one step lands where the teacher's 50-step ODE from the same noise does
    gap1, swd1, err1 = gap(), sliced_wasserstein(x1, ref), (x1 - ref).square().sum(1).mean()
    assert gap1 < 0.3 * gap0 and swd1 < 0.6 * swd0 and err1 < 0.08 * err0, (gap0, gap1, swd0, swd1, err0, err1)


# --------------------------------------------------------------------------------------------------- BOOT
def test_boot_boundary_is_teachers_x0_at_init(toy):
    _, sch, teacher, z, _ = toy
    m = make("boot", toy)
    last = torch.full((len(z),), 999.0)
    with torch.no_grad():
        want = sch.x0_eps(z, teacher(z, last, None), last)[0]
        assert torch.allclose(m.g(m.student, z, last, None), want, atol=1e-6)


def test_boot_is_data_free_and_learns_the_teachers_samples(toy):
    data, _, _, z, ref = toy
    nan = dataclasses.replace(data, train=torch.full_like(data.train, float("nan")),
                              test=torch.full_like(data.test, float("nan")))
    m = create_diffusion_method("boot", {"null_frac": 1.0}, toy[2], toy[1], nan, seed=0, lr=2e-3, batch_size=128)
    x1 = m.generate(z, None, 1).x
    swd0, err0 = sliced_wasserstein(x1, ref), (x1 - ref).square().sum(1).mean()
    losses = train(m, toy, 200)
    s1, s4 = m.generate(z, None, 1), m.generate(z, None, 4, trajectory=True)
    swd1, err1 = sliced_wasserstein(s1.x, ref), (s1.x - ref).square().sum(1).mean()
    assert all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in losses)
    assert swd1 < 0.4 * swd0 and err1 < 0.04 * err0, (swd0, swd1, err0, err1)  # err: same noise, same point
    last = torch.full((len(z),), 999.0)
    with torch.no_grad():  # the boundary still holds after training (the boundary term keeps it; unit-scale data)
        drift = (m.g(m.student, z, last, None) - toy[1].x0_eps(z, toy[2](z, last, None), last)[0]).square()
    assert drift.sum(1).mean() < 0.012, drift.sum(1).mean()
    assert s1.nfe == 1 and torch.equal(s4.x, s1.x) and len(s4.trajectory) == 5 and torch.equal(s4.trajectory[0], z)
