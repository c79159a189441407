"""HARD (Heinrich et al., 2023): hard augmentations for robust distillation. A learned augmenter (a spatial
transformer fed with noise and the image, plus a contrast/brightness part, starting at the identity) is trained
to maximise the teacher-student disagreement KL(p_T(x') || p_S(x')) on its augmented images x' while a
teacher-consistency term KL(p_T(x) || p_T(x')) keeps them recognisable to the teacher; the student minimises
the KD loss on augmented and clean images; the two updates alternate.

Setting of ``study_hard``: teacher = the zoo's ``mnist`` source, student = ConvNet-3 width 8 distilled on the
mnist5k train images (no labels), scored on mnist5k test sets under shifts it never saw. Baselines on the same
steps and batch size: plain KD on clean images and KD with random augmentations of the same family.

Departures from the paper: one augmenter step per student step (the paper tunes this ratio), a small
conv + MLP augmenter instead of the paper's STN/VAE variants, bounds by tanh squashing of every parameter.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.api import load, shifted
from kdlab.data.base import ArrayDataset, cycle_batches
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.shift.web_kd import Progress, check_pool
from kdlab.transfer.harness import make_student
from kdlab.transfer.teachers import accuracy

N_PARAMS = 8  # 6 affine entries, contrast, brightness
HARD_METHODS = ("kd", "kd_random_aug", "hard")
TEST_SHIFTS = {"clean": [], "rotate 0.3": [("rotate", 0.3)], "blur 0.5": [("blur", 0.5)],
               "noise 0.5": [("noise", 0.5)], "invert": [("invert", 1.0)], "edge": [("edge", 1.0)]}


@dataclass(frozen=True)
class AugBounds:
    """Augmentation strength: |theta - I| <= max_affine entrywise, contrast in 1 +- max_contrast (2 allows
    inversion), brightness offset in +- max_brightness."""

    max_affine: float = 0.4
    max_contrast: float = 0.5
    max_brightness: float = 0.2

    def __post_init__(self) -> None:
        for name, top in (("max_affine", 1.0), ("max_contrast", 2.0), ("max_brightness", 1.0)):
            v = getattr(self, name)
            if not 0.0 <= v <= top:
                raise ConfigError(f"bounds.{name}: must be in [0, {top}], got {v}")


def augmentation_params(u: torch.Tensor, bounds: AugBounds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map squashed parameters u in [-1, 1]^(N, 8) to (theta (N, 2, 3), contrast (N,), brightness (N,))."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=u.dtype)
    theta = eye + bounds.max_affine * u[:, :6].view(-1, 2, 3)
    return theta, 1.0 + bounds.max_contrast * u[:, 6], bounds.max_brightness * u[:, 7]


def apply_augmentation(x: torch.Tensor, u: torch.Tensor, bounds: AugBounds) -> torch.Tensor:
    """Warp ``x`` by the affine part, then scale contrast about each image's mean and shift brightness; the
    result is clipped to [0, 1]. u = 0 is the identity."""
    theta, contrast, brightness = augmentation_params(u, bounds)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    out = contrast.view(-1, 1, 1, 1) * (warped - mean) + mean + brightness.view(-1, 1, 1, 1)
    return out.clamp(0.0, 1.0)


class Augmenter(nn.Module):
    """HARD's learned augmenter: per-sample bounded affine + intensity parameters from the image and noise;
    the last layer starts at zero so the initial augmenter is the identity."""

    def __init__(self, in_channels: int = 1, noise_dim: int = 8, hidden: int = 32, bounds: AugBounds | None = None):
        super().__init__()
        if noise_dim < 1:
            raise ConfigError(f"noise_dim: must be >= 1, got {noise_dim}")
        self.bounds, self.noise_dim = bounds or AugBounds(), noise_dim
        self.encoder = nn.Sequential(nn.Conv2d(in_channels, 8, 5, stride=2, padding=2), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8 + noise_dim, hidden), nn.ReLU(), nn.Linear(hidden, N_PARAMS))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def params(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Squashed parameters u in [-1, 1]^(N, 8) for images ``x`` and noise ``z`` (N, noise_dim)."""
        return torch.tanh(self.head(torch.cat([self.encoder(x), z], 1)))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = torch.randn(len(x), self.noise_dim) if z is None else z
        return apply_augmentation(x, self.params(x, z), self.bounds)


def hard_terms(teacher: nn.Module, student: nn.Module, x: torch.Tensor, x_aug: torch.Tensor,
               temperature: float = 4.0) -> dict[str, torch.Tensor]:
    """disagreement = T^2 KL(p_T(x') || p_S(x')), consistency = KL(p_T(x) || p_T(x')) (teacher on clean x
    held fixed); both differentiable in x_aug."""
    with torch.no_grad():
        t_clean = teacher(x)
    t_aug = teacher(x_aug)
    return {"disagreement": kl_div(student(x_aug), t_aug, temperature),
            "consistency": kl_div(t_aug, t_clean, 1.0)}


def augmenter_step(augmenter: Augmenter, opt: torch.optim.Optimizer, teacher: nn.Module, student: nn.Module,
                   x: torch.Tensor, z: torch.Tensor, consistency: float = 2.0,
                   temperature: float = 4.0) -> dict[str, float]:
    """One augmenter update on a fixed student: minimise -disagreement + consistency * teacher-consistency."""
    was = student.training
    student.eval()
    terms = hard_terms(teacher, student, x, augmenter(x, z), temperature)
    loss = -terms["disagreement"] + consistency * terms["consistency"]
    params = list(augmenter.parameters())
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()
    student.train(was)
    return {k: float(v.detach()) for k, v in terms.items()}


def student_loss(teacher: nn.Module, student: nn.Module, x: torch.Tensor, x_aug: torch.Tensor | None,
                 temperature: float = 4.0) -> torch.Tensor:
    """KD loss on the clean batch plus, when given, on its augmented copy (teacher targets on each)."""
    with torch.no_grad():
        t = teacher(x if x_aug is None else torch.cat([x, x_aug]))
    s = student(x if x_aug is None else torch.cat([x, x_aug]))
    if x_aug is None:
        return kl_div(s, t, temperature)
    n = len(x)
    return kl_div(s[:n], t[:n], temperature) + kl_div(s[n:], t[n:], temperature)


def train_hard(method: str, teacher: nn.Module, data: ArrayDataset, steps: int = 300, batch_size: int = 64,
               lr: float = 3e-3, aug_lr: float = 1e-3, temperature: float = 4.0, consistency: float = 2.0,
               bounds: AugBounds | None = None, seed: int = 0) -> tuple[nn.Module, Augmenter | None]:
    """Distil ``teacher`` into a width-8 student on ``data``'s images by ``method``: "kd" (clean images),
    "kd_random_aug" (clean + uniformly random augmentations within ``bounds``) or "hard" (clean + learned
    adversarial augmentations, one augmenter step per student step). Returns (student, augmenter or None)."""
    if method not in HARD_METHODS:
        raise ConfigError(f"method: unknown {method!r}; valid: {', '.join(HARD_METHODS)}")
    if steps < 1:
        raise ConfigError(f"steps: must be >= 1, got {steps}")
    if consistency < 0:
        raise ConfigError(f"consistency: must be >= 0, got {consistency}")
    check_pool(teacher, data)
    bounds = bounds or AugBounds()
    teacher.eval()
    student = make_student(data.num_classes, data.in_shape, seed)
    augmenter = Augmenter(data.in_shape[0], bounds=bounds) if method == "hard" else None
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    aug_opt = torch.optim.Adam(augmenter.parameters(), lr=aug_lr) if augmenter is not None else None
    g = torch.Generator().manual_seed(seed * 1_000_003 + 5)
    student.train()
    for x, _, _ in cycle_batches(data, batch_size, steps, seed):
        x_aug = None
        if method == "kd_random_aug":
            x_aug = apply_augmentation(x, torch.rand(len(x), N_PARAMS, generator=g) * 2 - 1, bounds)
        elif augmenter is not None:
            z = torch.randn(len(x), augmenter.noise_dim, generator=g)
            augmenter_step(augmenter, aug_opt, teacher, student, x, z, consistency, temperature)
            with torch.no_grad():
                x_aug = augmenter(x, torch.randn(len(x), augmenter.noise_dim, generator=g))
        loss = student_loss(teacher, student, x, x_aug, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    student.eval()
    return student, augmenter


def study_hard(zoo, seed: int = 0, scale: float = 1.0, progress: Progress = None) -> dict:
    """HARD vs plain KD vs KD with random augmentations (same steps), scored on clean and shifted mnist5k tests.

    Returns {"study": "hard", "seed", "table": [{method, test set, accuracy}], "summary":
    {"hard_minus_kd_shifted_mean", "random_minus_kd_shifted_mean", "hard_minus_random_shifted_mean",
    "hard_minus_kd_clean"}, "shifted_mean": {method: mean accuracy over the shifted tests}, "setting", "seconds"}.
    """
    if scale <= 0:
        raise ConfigError(f"scale: must be > 0, got {scale}")
    t0 = time.perf_counter()
    steps = max(1, round(150 * scale))
    teacher = zoo.load("mnist")
    data = load("mnist5k", split="train", seed=seed)
    clean = load("mnist5k", split="test", seed=seed)
    tests = {name: shifted(clean, shift=sh, split="test", seed=seed) if sh else clean
             for name, sh in TEST_SHIFTS.items()}
    rows, acc = [], {}
    total = len(HARD_METHODS) + 1
    if progress:
        progress(0, total, "teacher")
    for name, ds in tests.items():
        rows.append({"method": "teacher", "test set": name, "accuracy": accuracy(teacher, ds)})
    for i, m in enumerate(HARD_METHODS, 1):
        student, _ = train_hard(m, teacher, data, steps=steps, seed=seed)
        acc[m] = {name: accuracy(student, ds) for name, ds in tests.items()}
        rows += [{"method": m, "test set": name, "accuracy": a} for name, a in acc[m].items()]
        if progress:
            progress(i, total, f"{m}: clean {acc[m]['clean']:.3f}")
    shifted_mean = {m: sum(a for n, a in acc[m].items() if n != "clean") / (len(TEST_SHIFTS) - 1) for m in acc}
    return {"study": "hard", "seed": seed, "table": rows,
            "summary": {"hard_minus_kd_shifted_mean": shifted_mean["hard"] - shifted_mean["kd"],
                        "random_minus_kd_shifted_mean": shifted_mean["kd_random_aug"] - shifted_mean["kd"],
                        "hard_minus_random_shifted_mean": shifted_mean["hard"] - shifted_mean["kd_random_aug"],
                        "hard_minus_kd_clean": acc["hard"]["clean"] - acc["kd"]["clean"]},
            "shifted_mean": shifted_mean,
            "setting": {"teacher": "zoo mnist (ConvNet-3 width 16)", "student": "convnet width 8 depth 3",
                        "train": f"mnist5k train images ({len(data)}), no labels", "steps": steps,
                        "batch_size": 64, "bounds": asdict(AugBounds()),
                        "tests": {n: [list(s) for s in sh] for n, sh in TEST_SHIFTS.items()}},
            "seconds": time.perf_counter() - t0}
