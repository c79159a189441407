"""Fixtures that write small data files the way real sources lay them out (image folders, CIFAR pickles)."""
from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from kdlab.data import DATASETS, forget


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(autouse=True)
def _forget_user_datasets() -> Iterator[None]:
    """Datasets a test registers are removed afterwards (registry, manifest, saved arrays)."""
    before = set(DATASETS.names())
    yield
    for name in set(DATASETS.names()) - before:
        forget(name)


@pytest.fixture
def write_png() -> Callable[[Path, np.ndarray], None]:
    """Writes a uint8 (H, W) or (H, W, 3) array as a PNG file, creating folders."""
    return _write_png


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``root/<class>/<i>.png`` with ``per_class`` images each, grey (H, W) or RGB (H, W, 3).

    Class ``k`` images have mean brightness rising with ``k`` so tests can tell classes apart.
    """

    def make(classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 10,
             size: tuple[int, int] = (6, 5), rgb: bool = False, root: Path | None = None,
             seed: int = 0) -> Path:
        root = root or tmp_path / "imgs"
        rng = np.random.default_rng(seed)
        for k, c in enumerate(classes):
            for i in range(per_class):
                shape = (*size, 3) if rgb else size
                a = (rng.integers(0, 40, shape) + 60 * k).clip(0, 255).astype(np.uint8)
                _write_png(root / c / f"{i:03d}.png", a)
        return root

    return make


def _dump(path: Path, obj: object, old_numpy_names: bool = True) -> None:
    """Pickle like the published files: protocol 2, bytes keys, arrays naming ``numpy.core.multiarray``."""
    raw = pickle.dumps(obj, protocol=2)
    if old_numpy_names:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing tiny CIFAR-10 (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or CIFAR-100
    (``train``, ``test``, ``meta``) python batch files in their real format; returns the parent folder."""

    def make(which: str = "cifar10", per_batch: int = 20, n_test: int = 20) -> Path:
        rng = np.random.default_rng(1)
        root = tmp_path / which
        if which == "cifar10":
            d = root / "cifar-10-batches-py"
            d.mkdir(parents=True)
            for b in range(1, 6):
                labels = [int(v) for v in np.arange(per_batch) % 10]
                _dump(d / f"data_batch_{b}", {b"batch_label": f"training batch {b} of 5".encode(),
                                              b"labels": labels,
                                              b"data": rng.integers(0, 256, (per_batch, 3072), np.uint8),
                                              b"filenames": [b"x.png"] * per_batch})
            _dump(d / "test_batch", {b"batch_label": b"testing batch 1 of 1",
                                     b"labels": [int(v) for v in np.arange(n_test) % 10],
                                     b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                                     b"filenames": [b"x.png"] * n_test})
            _dump(d / "batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                        b"dog", b"frog", b"horse", b"ship", b"truck"],
                                       b"num_cases_per_batch": per_batch, b"num_vis": 3072})
        else:
            d = root / "cifar-100-python"
            d.mkdir(parents=True)
            for part, n in (("train", 200), ("test", 100)):
                fine = np.arange(n) % 100
                _dump(d / part, {b"filenames": [b"x.png"] * n, b"batch_label": part.encode(),
                                 b"fine_labels": [int(v) for v in fine],
                                 b"coarse_labels": [int(v) for v in fine // 5],
                                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)})
            _dump(d / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                               b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
        return root

    return make
