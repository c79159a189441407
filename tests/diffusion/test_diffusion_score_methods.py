"""DMD2, SiD, guidance-adapter and multi-student distillation on the eight-Gaussians toy with a tiny MLP teacher."""
from __future__ import annotations

import dataclasses
import time

import pytest
import torch

import kdlab.diffusion.methods.dmd2  # noqa: F401  (registers)
import kdlab.diffusion.methods.guidance  # noqa: F401
import kdlab.diffusion.methods.multi_student  # noqa: F401
import kdlab.diffusion.methods.sid  # noqa: F401
from kdlab.diffusion import (
    NoiseSchedule,
    create_denoiser,
    create_diffusion_method,
    load_diffusion_data,
    sample_teacher,
    train_denoiser,
)
from kdlab.diffusion.metrics import sliced_wasserstein
from kdlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    data = load_diffusion_data("eight_gaussians", n_train=2000)
    schedule = NoiseSchedule()
    torch.manual_seed(0)
    net = create_denoiser((2,), 8, width=32, depth=2)
    teacher = train_denoiser(net, data, schedule, steps=400, batch_size=256, lr=3e-3, cond_drop=0.3, seed=0)
    z = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    reference = sample_teacher(teacher, z, None, 20).x  # the unconditional teacher's distribution
    return data, schedule, teacher, z, reference


def make(name, toy, hp=None, **kw):
    data, schedule, teacher = toy[:3]
    return create_diffusion_method(name, hp or {}, teacher, schedule, data, **{"lr": 2e-3, "seed": 0, **kw})


def grad_norm(method, name):
    """Largest |gradient| on the generator from its loss at a fresh batch."""
    y = method.data.train_labels[:64]
    terms = method.generator_loss(method.fresh(y, 64), y)
    method.student.zero_grad()
    sum(terms.values()).backward()
    return max(p.grad.abs().max().item() for p in method.student.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["dmd2", "sid"])
def test_generator_gradient_vanishes_when_the_fake_score_is_the_real_one(toy, name):
    m = make(name, toy)  # the fake score starts as a copy of the teacher, guidance 1
    assert grad_norm(m, name) < 1e-6
    with torch.no_grad():  # a fake score that differs from the teacher's pushes the generator
        for p in m.fake.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    assert grad_norm(m, name) > 1e-4


@pytest.mark.parametrize("name, steps", [("dmd2", 200), ("sid", 200)])
def test_training_moves_one_step_samples_toward_the_teacher(toy, name, steps):
    data, _, _, z, reference = toy
    m = make(name, toy)
    before = sliced_wasserstein(m.generate(z, None, 1).x, reference)
    g, t0 = torch.Generator().manual_seed(5), time.perf_counter()
    for _ in range(steps):
        m.train_step(data.train[torch.randint(0, 2000, (128,), generator=g)], None)  # unconditional
    after = sliced_wasserstein(m.generate(z, None, 1).x, reference)
    print(f"{name}: 1-step SWD to the teacher {before:.3f} -> {after:.3f} in {steps} steps, "
          f"{time.perf_counter() - t0:.1f} s")
    assert after < 0.5 * before


def test_fake_updates_per_generator_update_and_determinism(toy):
    y = toy[0].train_labels[:16]
    runs = []
    for _ in range(2):
        m = make("dmd2", toy, {"fake_updates": 3, "student_steps": 2})
        terms = [m.train_step(None, y) for _ in range(7)]
        assert [("dm" in t) for t in terms] == [True, False, False, True, False, False, True]
        assert m.updates == {"student": 3, "fake": 7}
        runs.append((terms, m.generate(toy[3][:8], y[:8], 2).x))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_sid_loss_is_the_score_identity_form(toy):
    """SiD's loss is linear in alpha with slope -mean(|f_real - f_fake|^2 / w) < 0 (alpha rewards the score gap)."""
    m = make("sid", toy)
    with torch.no_grad():
        for p in m.fake.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    y = toy[0].train_labels[:64]
    xg, state, losses = m.fresh(y, 64).detach(), m.generator.get_state(), []
    for alpha in (0.0, 1.2, 2.4):
        m.hp["alpha"] = alpha
        m.generator.set_state(state)  # the same timesteps and noise
        losses.append(m.generator_loss(xg, y)["sid"].item())
    assert losses[0] > losses[1] > losses[2]
    assert losses[1] - losses[0] == pytest.approx(losses[2] - losses[1], rel=1e-4)


def test_sid_reads_noise_at_t_init_and_resumes(toy):
    m = make("sid", toy, {"t_init": 756})
    out = m.generate(toy[3][:8], None, 1)
    assert out.nfe == 1 and torch.isfinite(out.x).all()
    m.train_step(None, toy[0].train_labels[:16])
    twin = make("sid", toy, {"t_init": 756}, seed=9)
    twin.load_state_dict(m.state_dict())
    assert twin.updates == m.updates and torch.equal(twin.generate(toy[3][:8], None, 3, generator=torch.Generator()
                                                                   .manual_seed(0)).x,
                                                     m.generate(toy[3][:8], None, 3, generator=torch.Generator()
                                                                .manual_seed(0)).x)


def guided_gap(m, teacher, schedule, data, w):
    """MSE between the one-pass student at w and the teacher's two-pass guided v, on noised data."""
    g = torch.Generator().manual_seed(11)
    x0, y = data.train[:256], data.train_labels[:256]
    t = torch.randint(0, 1000, (256,), generator=g).float()
    x_t = schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t)
    with torch.no_grad():
        v_c, v_u = teacher(x_t, t, y), teacher(x_t, t, torch.full_like(y, 8))
        return (m.student_v(x_t, t, y, w) - (v_u + w * (v_c - v_u))).square().mean().item(), (x_t, t, y)


def test_guidance_adapter_distils_cfg_into_one_pass_of_the_frozen_teacher(toy):
    data, schedule, teacher, z, _ = toy
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    m = make("guidance", toy, {"w_min": 1.0, "w_max": 4.0}, guidance=3.0)
    before, (x_t, t, y) = guided_gap(m, teacher, schedule, data, 3.0)
    before_low, _ = guided_gap(m, teacher, schedule, data, 1.5)
    with torch.no_grad():  # zero-initialised adapter: exactly the conditional teacher (and the teacher is untouched)
        assert torch.equal(m.student_v(x_t, t, y, 1.0), teacher(x_t, t, y))
    assert m.trainable_params() == sum(p.numel() for p in m.adapter.parameters()) < sum(
        p.numel() for p in teacher.parameters())
    g = torch.Generator().manual_seed(2)
    for _ in range(120):
        i = torch.randint(0, 2000, (128,), generator=g)
        m.train_step(data.train[i], data.train_labels[i])
    after, _ = guided_gap(m, teacher, schedule, data, 3.0)
    after_low, _ = guided_gap(m, teacher, schedule, data, 1.5)
    print(f"guidance: one-pass MSE to the guided v, w=3: {before:.4f} -> {after:.4f}, w=1.5: {before_low:.4f} -> "
          f"{after_low:.4f}")
    assert after < 0.5 * before and after_low < 0.7 * before_low
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    with torch.no_grad():  # the adapter hooks the student's copy only
        assert torch.equal(teacher(x_t, t, y), m.teacher(x_t, t, y))
    labels = data.train_labels[:8]
    assert m.generate(z[:8], labels, 4, guidance=3.0).nfe == 4
    assert sample_teacher(teacher, z[:8], labels, 4, guidance=3.0).nfe == 8


def test_guidance_trains_on_the_teachers_guided_paths(toy):
    m = make("guidance", toy, {"w_min": 3.0, "w_max": 3.0, "paths": 16})
    ref = sample_teacher(toy[2], m.path_x[0], m.path_y, 25, guidance=3.0, trajectory=True)
    assert torch.allclose(torch.stack(ref.trajectory[:25]), m.path_x, atol=1e-4)
    assert "guided" in m.train_step(None, None)  # the paths need no data
    data_states = make("guidance", toy, {"states": "data"})
    assert "guided" in data_states.train_step(toy[0].train[:16], toy[0].train_labels[:16])
    with pytest.raises(ConfigError, match="labelled"):
        data_states.train_step(None, None)


def test_dmd2_gan_term_trains_a_discriminator(toy):
    m = make("dmd2", toy, {"gan_weight": 0.5, "fake_updates": 1})
    before = [p.clone() for p in m.disc.parameters()]
    terms = m.train_step(toy[0].train[:32], toy[0].train_labels[:32])
    assert {"dm", "gan_g", "fake", "disc"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.disc.parameters(), strict=True))
    with pytest.raises(ConfigError, match="t_min"):
        make("dmd2", toy, {"t_min": 500, "t_max": 400})


def test_label_methods_refuse_unconditional_data(toy):
    data, schedule, teacher = toy[:3]
    bare = dataclasses.replace(data, train_labels=None, test_labels=None, num_classes=0)
    for name in ("guidance", "multi_student"):
        with pytest.raises(ConfigError):
            create_diffusion_method(name, {}, teacher, schedule, bare)


def test_multi_student_trains_each_student_on_its_group_and_routes_by_label(toy):
    data, _, teacher, z, _ = toy
    m = make("multi_student", toy, {"n_students": 2, "base_params": {"fake_updates": 2}})
    seen = [[], []]
    for g, sub in enumerate(m.students):
        assert set(sub.data.train_labels.tolist()) == set(range(4 * g, 4 * g + 4))
        orig = sub.train_step
        sub.train_step = lambda x0, y, g=g, orig=orig: seen[g].append(y.clone()) or orig(x0, y)
    y = data.train_labels[:64]
    terms = m.train_step(data.train[:64], y)
    assert {"s0/dm", "s1/dm", "s0/fake", "s1/fake"} <= set(terms)
    assert set(torch.cat(seen[0]).tolist()) <= {0, 1, 2, 3} and set(torch.cat(seen[1]).tolist()) <= {4, 5, 6, 7}
    labels = torch.arange(8).repeat(2)
    out = m.generate(z[:16], labels, 1)
    for g, sub in enumerate(m.students):  # each label's sample is its group's student's
        mask = labels // 4 == g
        assert torch.allclose(out.x[mask], sub.generate(z[:16][mask], labels[mask], 1).x)
    assert out.nfe == 1
    small = make("multi_student", toy, {"n_students": 4, "student_width_scale": 0.5})
    assert small.trainable_params() < 4 * sum(p.numel() for p in teacher.parameters())
    if "consistency" in kdlab.diffusion.methods.DIFFUSION_METHODS:
        cm = make("multi_student", toy, {"base": "consistency"})
        assert cm.kind == "renoise"
        assert {"s0/consistency", "s1/consistency"} <= set(cm.train_step(data.train[:32], data.train_labels[:32]))
