"""kdlab.diffusion's core: the shared schedule against diffusers, samplers, guidance, denoisers and their files,
data, and teachers trained once and cached."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from kdlab.diffusion import (
    MLPDenoiser,
    NoiseSchedule,
    UNetDenoiser,
    cached_teacher,
    check_same_output,
    create_denoiser,
    load_denoiser,
    load_diffusion_data,
    sample_student,
    sample_teacher,
    save_denoiser,
    teacher_config,
    train_denoiser,
)
from kdlab.diffusion.schedule import check_guidance, check_steps, guided_v, student_timesteps
from kdlab.errors import CheckpointError, ConfigError, ShapeError, UnknownNameError

S = NoiseSchedule()


def small_mlp(classes: int = 8, seed: int = 0) -> MLPDenoiser:
    torch.manual_seed(seed)
    return MLPDenoiser(2, classes, width=32, depth=1)


def test_the_schedule_is_diffusers_cosine_and_v_prediction_inverts_exactly():
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    assert torch.allclose(S.alphas_cumprod[:1000], ref) and S.alphas_cumprod[-1] == 1.0  # index -1: clean data
    x0, eps = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    t = torch.randint(0, 1000, (64,))
    x_t, v = S.add_noise(x0, eps, t), S.v_target(x0, eps, t)
    assert torch.allclose(S.alpha(t, x0) ** 2 + S.sigma(t, x0) ** 2, torch.ones(64, 1, dtype=torch.float64))
    back_x0, back_eps = S.x0_eps(x_t, v, t)
    assert torch.allclose(back_x0, x0, atol=1e-9) and torch.allclose(back_eps, eps, atol=1e-9)
    assert torch.allclose(S.v_from_x0(x_t, x0, t), v, atol=1e-6)
    assert torch.equal(S.add_noise(x0, eps, -1), x0)  # t = -1 is the clean sample


def test_the_students_ddim_rule_is_diffusers_ddim_step_for_step():
    net = small_mlp(0)
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    for k in (1, 2, 4, 5, 50):  # k dividing 1000: diffusers steps to t - 1000 // k, which is the next timestep
        a, b = sample_teacher(net, z, steps=k, sampler="ddim"), sample_student(net, S, z, steps=k, kind="ddim")
        assert torch.allclose(a.x, b.x, atol=1e-5), k
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    sch.set_timesteps(4)
    assert sch.timesteps.tolist() == student_timesteps(4) == [999, 749, 499, 249]
    assert student_timesteps(1) == [999]


def test_one_ddim_step_is_diffusers_ddim_step():
    net = small_mlp(0)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                        timestep_spacing="trailing", clip_sample=False)
    sch.set_timesteps(4)  # 999 -> 749
    v = net(x, torch.full((16,), 999.0))
    assert torch.allclose(S.ddim_step(x, v, 999, 749), sch.step(v, 999, x).prev_sample, atol=1e-5)


class GaussianOracle(torch.nn.Module):
    """The exact denoiser of data ~ N(0, sd^2 I): E[x0 | x_t] = a sd^2 x_t / (a^2 sd^2 + s^2), as a v-prediction."""

    num_classes = 0

    def __init__(self, sd: float):
        super().__init__()
        self.sd = sd

    def forward(self, x, t, y=None):
        a, s = S.alpha(t, x), S.sigma(t, x)
        return S.v_from_x0(x, a * self.sd**2 * x / (a * a * self.sd**2 + s * s), t)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler", "dpm"])
def test_every_sampler_turns_noise_into_the_data_with_the_exact_denoiser(sampler):
    # data N(0, 2^2): beyond [-1, 1], so a sampler that clipped x0 or mis-scaled its start noise would show
    z = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    out = sample_teacher(GaussianOracle(2.0), z, steps=50, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert out.trajectory is None and float(out.x.std()) == pytest.approx(2.0, rel=0.05)
    assert abs(float(out.x.mean())) < 0.15


def test_the_ddpm_sampler_draws_its_noise_from_the_given_generator():
    net, z = small_mlp(0), torch.randn(8, 2)
    runs = [sample_teacher(net, z, steps=3, sampler="ddpm", generator=torch.Generator().manual_seed(s)).x
            for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


def test_renoise_sampling_uses_fresh_noise_and_one_step_kinds_agree():
    net = small_mlp(0)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    one = [sample_student(net, S, z, steps=1, kind=k).x for k in ("ddim", "renoise")]
    assert torch.equal(*one)  # one step: nothing to re-noise
    two = [sample_student(net, S, z, steps=2, kind="renoise", generator=torch.Generator().manual_seed(s)).x
           for s in (0, 0, 1)]
    assert torch.equal(two[0], two[1]) and not torch.allclose(two[0], two[2])
    traj = sample_student(net, S, z, steps=4, trajectory=True)
    assert len(traj.trajectory) == 5 and traj.nfe == 4 and torch.equal(traj.trajectory[-1], traj.x)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler", "dpm"])
def test_every_sampler_counts_its_evaluations_and_guidance_doubles_them(sampler):
    net = small_mlp(8)
    z, y = torch.randn(8, 2), torch.arange(8)
    plain = sample_teacher(net, z, y, steps=3, sampler=sampler, generator=torch.Generator().manual_seed(0))
    guided = sample_teacher(net, z, y, steps=3, sampler=sampler, guidance=3.0,
                            generator=torch.Generator().manual_seed(0))
    assert plain.nfe == 3 and guided.nfe == 6 and torch.isfinite(guided.x).all()


def test_guidance_interpolates_between_the_unconditional_and_conditional_predictions():
    net = small_mlp(8)
    x, t, y = torch.randn(8, 2), torch.full((8,), 500.0), torch.arange(8)
    cond, uncond = net(x, t, y), net(x, t, None)
    assert torch.allclose(guided_v(net, x, t, y, 1.0), cond) and torch.equal(guided_v(net, x, t, y), cond)
    assert torch.allclose(guided_v(net, x, t, y, 0.0), uncond, atol=1e-6)
    assert torch.allclose(guided_v(net, x, t, y, 3.0), uncond + 3 * (cond - uncond), atol=1e-5)


def test_bad_steps_guidance_and_sampler_are_refused_with_the_valid_choices():
    net = small_mlp(8)
    with pytest.raises(ConfigError, match=r"steps.*\[1, 1000\]"):
        sample_teacher(net, torch.randn(2, 2), steps=0)
    with pytest.raises(ConfigError, match="guidance"):
        sample_teacher(net, torch.randn(2, 2), torch.arange(2), guidance=25.0)
    with pytest.raises(UnknownNameError, match="ddim"):
        sample_teacher(net, torch.randn(2, 2), steps=2, sampler="heunn")
    with pytest.raises(ConfigError, match="renoise"):
        sample_student(net, S, torch.randn(2, 2), kind="ode")
    # the bounds themselves are valid, and the checks return the value
    assert check_steps(1000) == 1000 and check_steps(1) == 1
    with pytest.raises(ConfigError, match="steps"):
        check_steps(1001)
    assert check_guidance(0) == 0.0 and check_guidance(20) == 20.0 and isinstance(check_guidance(2), float)
    with pytest.raises(ConfigError, match="guidance"):
        check_guidance(20.5)


def test_denoisers_keep_the_sample_shape_and_round_trip_through_their_files(tmp_path):
    unet = UNetDenoiser((1, 8, 8), 10, channels=(8, 16))
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([0.0, 500.0, 999.0]), torch.tensor([0, 5, 10])
    assert unet(x, t, y).shape == x.shape and unet.time_embedding is unet.unet.time_embedding
    for net, inp in ((unet, x), (small_mlp(8), torch.randn(3, 2))):
        folder = save_denoiser(net, tmp_path / net.config["arch"], meta={"note": "<b>"})
        back = load_denoiser(folder)
        assert back.config == net.config and torch.equal(back(inp, t, y % 8 if inp.dim() == 2 else y),
                                                           net(inp, t, y % 8 if inp.dim() == 2 else y))
    with pytest.raises(ConfigError, match="halve"):
        create_denoiser((1, 28, 28), 10, channels=(8, 16, 32, 64))


def test_a_folder_that_is_not_a_denoiser_and_a_student_of_another_shape_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="not a kdlab diffusion denoiser"):
        load_denoiser(tmp_path)
    with pytest.raises(CheckpointError, match="config.json"):
        load_denoiser(tmp_path / "missing")
    teacher = small_mlp(8)
    with pytest.raises(ShapeError, match=r"outputs \[3\].*teacher \[2\]|cannot take"):
        check_same_output(teacher, MLPDenoiser(3, 8, width=16, depth=1))
    with pytest.raises(ShapeError, match="classes"):
        check_same_output(teacher, MLPDenoiser(2, 0, width=16, depth=1))
    check_same_output(teacher, MLPDenoiser(2, 8, width=16, depth=1))  # a narrower student is fine


def test_data_are_scaled_labelled_and_split():
    eg = load_diffusion_data("eight_gaussians", n_train=4000)
    assert eg.train.shape == (4000, 2) and eg.test.shape == (1000, 2) and eg.num_classes == 8
    radius = eg.train.norm(dim=1)
    assert abs(radius.mean().item() - 1.5) < 0.02 and set(eg.train_labels.tolist()) == set(range(8))
    angle = torch.atan2(eg.train[:, 1], eg.train[:, 0]) % (2 * torch.pi)
    assert ((angle / (2 * torch.pi / 8)).round() % 8 == eg.train_labels).float().mean() > 0.99
    assert not torch.equal(eg.train[:1000], eg.test)
    roll = load_diffusion_data("swiss_roll", n_train=500)
    assert roll.num_classes == 0 and roll.train_labels is None
    digits = load_diffusion_data("digits")
    assert digits.is_image and digits.sample_shape == (1, 8, 8)
    assert digits.train.min() == -1 and digits.train.max() == 1
    with pytest.raises(UnknownNameError, match="two_moons"):
        load_diffusion_data("moons")


def test_a_teacher_learns_the_modes_and_is_trained_once_then_read_from_the_cache():
    data = load_diffusion_data("eight_gaussians", n_train=4000)
    losses = []
    cfg = teacher_config(data, width=64, steps=400, seed=3)
    net, meta = cached_teacher(data, cfg, progress=lambda s, n, loss: losses.append(loss))
    assert meta["source"] == "trained" and len(losses) == 400
    assert sum(losses[-50:]) / 50 < 0.6 * sum(losses[:50]) / 50
    again, meta2 = cached_teacher(data, cfg, progress=lambda *a: pytest.fail("trained twice"))
    assert meta2["source"] == "cache"
    z, y = torch.randn(400, 2, generator=torch.Generator().manual_seed(0)), torch.arange(400) % 8
    x = sample_teacher(again, z, y, steps=20).x
    centre = 1.5 * torch.stack([torch.cos(y * torch.pi / 4), torch.sin(y * torch.pi / 4)], 1)
    assert (x - centre).norm(dim=1).median() < 0.35  # conditional samples land on their own mode
    assert all(not p.requires_grad for p in again.parameters())


def test_training_is_deterministic_given_the_seed():
    data = load_diffusion_data("two_moons", n_train=1000)
    nets = [train_denoiser(small_mlp(2, seed=0), data, S, steps=20, batch_size=64, seed=s) for s in (1, 1, 2)]
    x, t = torch.randn(4, 2), torch.full((4,), 300.0)
    assert torch.equal(nets[0](x, t), nets[1](x, t)) and not torch.equal(nets[0](x, t), nets[2](x, t))


def test_a_method_refuses_a_student_of_another_output_shape_before_training():
    from kdlab.diffusion import create_diffusion_method

    data = load_diffusion_data("eight_gaussians", n_train=500)
    for name in ("progressive", "consistency", "dmd2"):
        with pytest.raises(ShapeError, match=r"student.*\[3\]|cannot take"):
            create_diffusion_method(name, {}, small_mlp(8), S, data, student=MLPDenoiser(3, 8, width=16, depth=1))
    with pytest.raises(ConfigError, match="guidance.*scale"):
        create_diffusion_method("progressive", {}, small_mlp(8), S, data, guidance=-1.0)
