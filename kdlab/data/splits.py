"""Stratified train/val/test splits with exact sizes, so every split keeps the class proportions."""
from __future__ import annotations

import numpy as np

from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError

SPLIT_SEED = 20240607  # fixed: the same images are test images in every run, whatever the run's seed


def resolve_size(size: int | float, n: int, where: str) -> int:
    """A split size given as a count (int) or a fraction of ``n`` (float in [0, 1)) as a count."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ConfigError(f"{where}: expected a count or a fraction in [0, 1), got {size!r}")
    if isinstance(size, float):
        if not 0.0 <= size < 1.0:
            raise ConfigError(f"{where}: a fraction must be in [0, 1), got {size!r}")
        return int(round(size * n))
    if not 0 <= size <= n:
        raise ConfigError(f"{where}: {size} is outside [0, {n}] (the number of samples)")
    return int(size)


def allocate(available: np.ndarray, total: int) -> np.ndarray:
    """Per-class counts summing to ``total``, proportional to ``available`` (largest remainder)."""
    available = np.asarray(available, dtype=np.int64)
    n = int(available.sum())
    if total > n:
        raise ConfigError(f"split size {total} is larger than the {n} samples available")
    if n == 0 or total == 0:
        return np.zeros_like(available)
    quota = total * available / n
    take = np.floor(quota).astype(np.int64)
    left = total - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:left]] += 1
    return take


def stratified_split(y: np.ndarray, n_val: int, n_test: int,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(train, val, test)`` with exactly ``n_val`` / ``n_test`` rows, stratified by ``y``.

    Each split is returned in a fixed shuffled order (mixed classes even without a shuffling loader).
    """
    y = np.asarray(y)
    if n_val + n_test > len(y):
        raise ConfigError(f"val ({n_val}) + test ({n_test}) is more than the {len(y)} samples")
    rng = np.random.default_rng(seed)
    labels = np.unique(y)
    members = [rng.permutation(np.flatnonzero(y == c)) for c in labels]
    counts = np.array([len(m) for m in members])
    n_te = allocate(counts, n_test)
    n_va = allocate(counts - n_te, n_val)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for m, a, b in zip(members, n_te, n_va, strict=True):
        parts[2].append(m[:a])
        parts[1].append(m[a:a + b])
        parts[0].append(m[a + b:])
    out = tuple(rng.permutation(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)
    return out  # type: ignore[return-value]


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` rows of ``y`` chosen by ``seed``, keeping class proportions (sorted)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    labels = np.unique(y)
    members = [rng.permutation(np.flatnonzero(y == c)) for c in labels]
    take = allocate(np.array([len(m) for m in members]), n)
    chosen = [m[:k] for m, k in zip(members, take, strict=True)]
    return np.sort(np.concatenate(chosen or [np.zeros(0, np.int64)]))


def split_dataset(full: ArrayDataset, split: str, n_val: int, n_test: int, *, n_train: int | None = None,
                  seed: int = 0) -> ArrayDataset:
    """One split of ``full`` (fixed stratified split); ``n_train`` keeps a seed-chosen stratified subset."""
    train, val, test = stratified_split(full.y.numpy(), n_val, n_test)
    index = {"train": train, "val": val, "test": test}[split]
    if split == "train" and n_train is not None:
        if n_train > len(train):
            raise ConfigError(f"params.n_train: {n_train} is more than the {len(train)} training samples "
                              f"of {full.name!r}; valid: 1..{len(train)}")
        index = index[stratified_subset(full.y.numpy()[index], n_train, seed)]
    return full.subset(index)
