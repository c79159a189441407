"""The dataset container and registry: every dataset, built-in or user's, is an ``ArrayDataset``."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from kdlab.errors import ConfigError
from kdlab.registry import Entry, Registry


class DatasetRegistry(Registry):
    """A ``Registry`` that can restore a name on first lookup (user datasets saved by another process).

    ``fallback(name) -> bool`` is installed by ``kdlab.data.register``; it re-registers a persisted user
    dataset so a background worker can ``load`` what a notebook registered.
    """

    def __init__(self, kind: str):
        super().__init__(kind)
        self.fallback: Callable[[str], bool] | None = None

    def entry(self, name: str, where: str | None = None) -> Entry:
        if name not in self._entries and self.fallback is not None:
            self.fallback(name)
        return super().entry(name, where)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._entries and self.fallback is not None:
            self.fallback(name)
        return super().__contains__(name)

    def remove(self, name: str) -> None:
        """Forget ``name`` (user datasets are re-registered when their source is read again)."""
        self._entries.pop(name, None)


DATASETS = DatasetRegistry("dataset")
SPLITS = ("train", "val", "test")


def check_finite(values: torch.Tensor | np.ndarray, name: str, what: str = "pixel values", *,
                 item: str = "sample", first: int = 0, where: str = "", fix: str = "") -> None:
    """ConfigError unless every value of ``values`` (items along the first axis) is finite.

    The message names ``name``, how many values are NaN and how many infinite, and the first bad item's
    index (``first`` + its row; ``where`` is appended to it, e.g. the file it came from). Integer arrays
    pass at once (they cannot hold NaN); comparisons such as ``x < 0`` miss NaN, so range checks need this.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind not in "fc":
        return  # integer, bool (or dtypes torch cannot take): nothing can be NaN
    t = torch.as_tensor(values)
    if not (t.is_floating_point() or t.is_complex()) or not t.numel():
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    n_nan, n_bad = int(torch.isnan(t).sum()), int(bad.sum())
    rows = bad.reshape(len(t), -1).any(1) if t.ndim else bad.reshape(1)
    at = first + int(rows.nonzero()[0, 0])
    n_rows = int(rows.sum())
    place = (f"in {item} {at}" if len(rows) == 1 else
             f"in {n_rows} of {len(rows)} {item}s, the first is {item} {at}")
    raise ConfigError(f"{name}: {n_bad} {what} are NaN or infinite ({n_nan} NaN, {n_bad - n_nan} inf) "
                      f"{place}{where}; {fix or 'fix or drop those ' + item + 's'}")


def check_pixels(x: torch.Tensor | np.ndarray, name: str, *, tol: float = 0.0, fix: str = "",
                 first: int = 0, where: str = "") -> None:
    """ConfigError unless every pixel of images ``x`` (N, ...) is finite and in [0, 1] (``tol`` either side):
    the one check every user-data entry point runs (NaN fails no comparison, so it is looked for first)."""
    check_finite(x, name, first=first, where=where,
                 fix="images must hold finite values in [0, 1]; fix or drop those samples")
    t = torch.as_tensor(x)
    if not t.is_floating_point() or not t.numel():
        return
    outside = (t < -tol) | (t > 1.0 + tol)
    if bool(outside.any()):
        rows = outside.reshape(len(t), -1).any(1)
        raise ConfigError(f"{name}: images must be in [0, 1], got values in [{float(t.min()):.3g}, "
                          f"{float(t.max()):.3g}] ({int(outside.sum())} values outside, the first in sample "
                          f"{first + int(rows.nonzero()[0, 0])}{where}){fix}")


def check_labels(y: torch.Tensor | np.ndarray, name: str, *, item: str = "sample", first: int = 0,
                 where: str = "") -> None:
    """ConfigError unless float labels ``y`` are finite whole numbers (they become int64 class indices, where
    NaN would turn into a huge negative number and 2.5 into 2); integer labels pass at once."""
    check_finite(y, name, "labels", item=item, first=first, where=where,
                 fix=f"labels must be class indices 0, 1, ...; fix or drop those {item}s")
    if isinstance(y, np.ndarray) and y.dtype.kind != "f":
        return
    t = torch.as_tensor(y)
    if t.is_floating_point() and t.numel():
        frac = t != t.round()
        if bool(frac.any()):
            at = first + int(frac.reshape(len(t), -1).any(1).nonzero()[0, 0]) if t.ndim else first
            raise ConfigError(f"{name}: {int(frac.sum())} labels are not whole numbers (the first in {item} "
                              f"{at}{where} is {float(t.reshape(-1)[frac.reshape(-1)][0]):g}); labels must be "
                              f"class indices 0, 1, ...")


class ImageTensors(Dataset):
    """In-memory images ``x`` (N, C, H, W) with labels ``y`` and class names: items are ``(x, y, index)`` (the
    index lets the trainer cache teacher outputs per sample). Real and synthetic sets share this face."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i], self.y[i], i

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]


@dataclass
class ArrayDataset(ImageTensors):
    """Images ``x`` (N, C, H, W) float32 in [0, 1] and labels ``y`` (N,) int64, held in memory."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = "data"
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x, dtype=torch.float32)
        y = torch.as_tensor(self.y)
        if y.is_floating_point():
            check_labels(y, self.name)
        self.y = y.to(torch.int64)
        if self.x.ndim != 4:
            raise ConfigError(f"{self.name}: images must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise ConfigError(f"{self.name}: {len(self.x)} images but {len(self.y)} labels")
        if not self.classes:
            n = int(self.y.max()) + 1 if len(self.y) else 0
            self.classes = [str(i) for i in range(n)]

    def subset(self, index: np.ndarray | torch.Tensor, name: str | None = None) -> ArrayDataset:
        """A new dataset holding the rows ``index`` (same classes)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ArrayDataset(self.x[idx], self.y[idx], name or self.name, list(self.classes), self.source)


class BatchLoader:
    """Yields ``(x, y, index)`` batches from an ``ArrayDataset`` by tensor slicing (no worker overhead).

    Reshuffles every epoch from ``seed`` + epoch, so runs are reproducible and resumable. ``shard=(rank,
    world)`` gives process ``rank`` its share of each epoch; shuffled shards are padded to equal length
    (as DistributedSampler does) so every process takes the same number of steps.
    """

    def __init__(self, dataset: ArrayDataset, batch_size: int = 128, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"shard: rank {rank} of world {world} is invalid")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this process sees per epoch."""
        n = len(self.dataset)
        if self.world == 1:
            return n
        return -(-n // self.world) if self.shuffle else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
            if self.world > 1:
                pad = self.num_samples * self.world - n
                order = torch.cat([order, order[:pad]])
        else:
            order = torch.arange(n)
        return order[self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.dataset.x[idx], self.dataset.y[idx], idx


def cycle_batches(data: ArrayDataset, batch_size: int, steps: int, seed: int,
                  drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``steps`` shuffled batches ``(x, y, index)`` of ``data``, cycling through epochs (each reshuffled from
    ``seed``); with ``drop_last``, full batches only unless the data is smaller than one batch."""
    loader, done, epoch = BatchLoader(data, batch_size, shuffle=True, seed=seed, drop_last=drop_last), 0, 0
    if len(loader) == 0:
        loader = BatchLoader(data, batch_size, shuffle=True, seed=seed)
    while done < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
            done += 1
            if done >= steps:
                return
        epoch += 1
