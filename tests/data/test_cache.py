"""The .npz cache: built once, reused, written atomically, rebuilt when corrupt."""
from __future__ import annotations

import numpy as np
import torch

from kdlab.data import load
from kdlab.data.cache import cache_path, cached, load_npz


def test_cached_builds_once_then_reuses() -> None:
    calls = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)}

    a = cached("test-reuse", build, keys=("x",))
    b = cached("test-reuse", build, keys=("x",))
    assert len(calls) == 1 and np.array_equal(a["x"], b["x"])
    assert cache_path("test-reuse").is_file()
    assert not list(cache_path("test-reuse").parent.glob("*.tmp"))  # no temporary file left behind


def test_corrupt_or_incomplete_cache_is_rebuilt() -> None:
    path = cache_path("test-corrupt")
    calls = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.ones(3), "y": np.zeros(3)}

    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    assert load_npz(path) is None
    assert np.array_equal(cached("test-corrupt", build, keys=("x", "y"))["x"], np.ones(3))
    np.savez(path.with_suffix(".tmp.npz"), x=np.ones(3))  # valid file missing the 'y' array
    path.with_suffix(".tmp.npz").replace(path)
    cached("test-corrupt", build, keys=("x", "y"))
    assert len(calls) == 2 and load_npz(path, ("x", "y")) is not None


def test_builtin_dataset_survives_a_corrupt_cache_file() -> None:
    first = load("digits", split="test")
    path = cache_path("digits")
    assert path.is_file()
    path.write_bytes(path.read_bytes()[:100])  # truncated
    again = load("digits", split="test")
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert load_npz(path, ("x", "y")) is not None
