"""User datasets in the same registry as the built-ins: ``register_dataset``, ``register_arrays``, ``forget``.

User data gets a fixed stratified val (and test) split. Datasets from files or arrays are recorded in a
small manifest under ``cache_dir("data")`` so a background worker process can ``load`` them by name too.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlab.data.base import DATASETS, SPLITS, ArrayDataset, check_finite, check_pixels
from kdlab.data.builtin import N_TRAIN_PARAM
from kdlab.data.cache import cache_path, load_npz, save_npz
from kdlab.data.splits import SPLIT_SEED, resolve_size, stratified_split, stratified_subset
from kdlab.errors import ConfigError
from kdlab.paths import cache_dir
from kdlab.registry import Param

TRAIN, VAL, TEST = 0, 1, 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------------- splits

def assign_parts(y: np.ndarray, part: np.ndarray | None, val_size: int | float,
                 test_size: int | float) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) per row: given parts kept, missing val/test carved stratified.

    ``part`` marks rows that come pre-split (e.g. a ``test/`` folder); rows marked train form the pool
    that a missing test and then a missing val split are drawn from, sizes relative to that pool.
    """
    y = np.asarray(y)
    part = np.zeros(len(y), np.int64) if part is None else np.asarray(part, np.int64).copy()
    pool = np.flatnonzero(part == TRAIN)
    n_test = 0 if (part == TEST).any() else resolve_size(test_size, len(pool), "test_size")
    n_val = 0 if (part == VAL).any() else resolve_size(val_size, len(pool), "val_size")
    if n_val + n_test >= len(pool) and len(pool):
        raise ConfigError(f"val_size + test_size: {n_val} + {n_test} leaves no training samples out of "
                          f"{len(pool)}; use smaller fractions")
    _, val, test = stratified_split(y[pool], n_val, n_test, SPLIT_SEED)
    part[pool[val]] = VAL
    part[pool[test]] = TEST
    return part


def _order(part: np.ndarray, code: int) -> np.ndarray:
    """Rows of one split in a fixed shuffled order (so an unshuffled loader still sees mixed classes)."""
    rows = np.flatnonzero(part == code)
    return rows[np.random.default_rng(SPLIT_SEED + code).permutation(len(rows))]


class UserData:
    """A user dataset's images, labels and split codes; serves one split, optionally subsampled."""

    def __init__(self, name: str, build: Callable[[], tuple[ArrayDataset, np.ndarray]]):
        self.name = name
        self._build = build
        self._data: tuple[ArrayDataset, np.ndarray] | None = None

    @classmethod
    def of(cls, name: str, data: ArrayDataset, part: np.ndarray) -> UserData:
        out = cls(name, lambda: (data, part))
        out._data = (data, part)
        return out

    @property
    def data(self) -> tuple[ArrayDataset, np.ndarray]:
        if self._data is None:
            self._data = self._build()
        return self._data

    def __call__(self, split: str = "train", seed: int = 0, n_train: int | None = None) -> ArrayDataset:
        full, part = self.data
        code = SPLITS.index(split)
        rows = _order(part, code)
        if not len(rows) and len(full):
            raise ConfigError(f"split: dataset {self.name!r} has no {split!r} rows; register it with a "
                              f"nonzero {split}_size")
        if split == "train" and n_train is not None:
            if n_train > len(rows):
                raise ConfigError(f"params.n_train: {n_train} is more than the {len(rows)} training samples "
                                  f"of {self.name!r}; valid: 1..{len(rows)}")
            rows = rows[stratified_subset(full.y.numpy()[rows], n_train, seed)]
        ds = full.subset(rows)
        ds.name = self.name
        return ds

    def splits(self) -> dict[str, ArrayDataset]:
        """The non-empty splits by name."""
        part = self.data[1]
        return {s: self(s) for i, s in enumerate(SPLITS) if (part == i).any()}

    def info(self) -> dict[str, Any]:
        """Catalog facts: class count, input shape, split sizes, source."""
        full, part = self.data
        return {"classes": full.num_classes, "shape": tuple(full.in_shape), "source": full.source,
                **{s: int((part == i).sum()) for i, s in enumerate(SPLITS)}}


# ----------------------------------------------------------------------------------------- registry

def check_name(name: str) -> str:
    """A dataset name usable as a registry key and a file name; built-in names cannot be replaced."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name: {name!r} is not a valid dataset name; use letters, digits, '_', '-', '.'")
    if name in DATASETS.names() and not DATASETS.entry(name).tags.get("user"):
        raise ConfigError(f"name: {name!r} is a built-in dataset; choose another name")
    return name


def _install(name: str, loader: Any, params: Mapping[str, Param], **tags: Any) -> None:
    check_name(name)
    DATASETS.remove(name)  # re-registering a user dataset (a re-run notebook cell) replaces it
    DATASETS.register(name, params=dict(params), user=True, **tags)(loader)


def register_dataset(name: str | None = None, params: Mapping[str, Param] | None = None, *,
                     source: str = "user", val_size: int | float = 0.1,
                     test_size: int | float = 0.2) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a user dataset to the registry, so ``load(name, split=...)`` and specs can use it.

    The function either takes ``split`` (and optionally ``seed``) and returns that split, or takes only
    its declared ``params`` and returns all the data (``ArrayDataset`` or ``(x, y)``; uint8 is scaled to
    [0, 1]), which then gets a fixed stratified val/test split and an ``n_train`` parameter.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = check_name(name or fn.__name__.lower())
        declared = dict(params or {})
        sig = inspect.signature(fn).parameters
        doc = fn.__doc__
        if "split" in sig:
            takes_seed = "seed" in sig or any(p.kind is p.VAR_KEYWORD for p in sig.values())

            def per_split(split: str = "train", seed: int = 0, **kw: Any) -> ArrayDataset:
                out = fn(split=split, seed=seed, **kw) if takes_seed else fn(split=split, **kw)
                return as_dataset(out, key, source)

            loader: Any = per_split
        else:
            memo: dict[str, UserData] = {}

            def whole(split: str = "train", seed: int = 0, n_train: int | None = None,
                      **kw: Any) -> ArrayDataset:
                k = repr(sorted(kw.items()))
                if k not in memo:
                    full = as_dataset(fn(**kw), key, source)
                    memo[k] = UserData.of(key, full, assign_parts(full.y.numpy(), None, val_size, test_size))
                return memo[k](split, seed, n_train)

            declared.setdefault("n_train", N_TRAIN_PARAM)
            loader = whole
        loader.__doc__ = doc
        _install(key, loader, declared, source=source)
        return fn

    return wrap


def as_dataset(out: Any, name: str, source: str = "") -> ArrayDataset:
    """An ``ArrayDataset`` from what a user function returned (a dataset or ``(x, y)``; uint8 -> [0, 1])."""
    if isinstance(out, ArrayDataset):
        check_finite(out.x, name)
        return out
    if isinstance(out, tuple) and len(out) in (2, 3):
        x, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in out[:2])
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if x.ndim == 3:
            x = x[:, None]
        classes = [str(c) for c in out[2]] if len(out) == 3 else []
        check_pixels(x, name, fix="; return [0, 1] floats or uint8 images")
        return ArrayDataset(x, y, name, classes, source)
    raise ConfigError(f"{name}: a dataset function must return an ArrayDataset or (x, y), "
                      f"got {type(out).__name__}")


def register_arrays(name: str, data: ArrayDataset, *, test_data: ArrayDataset | None = None,
                    val_size: int | float = 0.1, test_size: int | float = 0.2,
                    persist: bool = True) -> dict[str, ArrayDataset]:
    """Register in-memory data under ``name`` with a fixed stratified val (and test, unless given) split.

    With ``persist`` the arrays are saved under the cache so other processes can ``load(name)``.
    Returns the ``{"train", "val", "test"}`` splits.
    """
    check_name(name)
    check_finite(data.x, name)
    if test_data is not None:
        check_finite(test_data.x, f"{name} (test_data)")
        if test_data.in_shape != data.in_shape:
            raise ConfigError(f"test_data: image shape {test_data.in_shape} differs from {data.in_shape}")
        k = max(data.num_classes, test_data.num_classes)
        classes = data.classes if data.num_classes == k else test_data.classes
        full = ArrayDataset(torch.cat([data.x, test_data.x]), torch.cat([data.y, test_data.y]), name,
                            list(classes), data.source)
        given = np.r_[np.full(len(data), TRAIN), np.full(len(test_data), TEST)]
    else:
        full = ArrayDataset(data.x, data.y, name, list(data.classes), data.source)
        given = None
    part = assign_parts(full.y.numpy(), given, val_size, test_size)
    user = UserData.of(name, full, part)
    record = None
    if persist:
        save_arrays(name, full, part)
        record = {"kind": "arrays"}
    put_user(name, user, record)
    return user.splits()


def put_user(name: str, user: UserData, record: dict[str, Any] | None) -> None:
    """Install ``user`` under ``name`` with its catalog facts; record how to rebuild it (or forget it)."""
    _install(name, user, {"n_train": N_TRAIN_PARAM}, **user.info())
    if record is not None:
        _write_record(name, {**record, "info": {**user.info(), "shape": list(user.info()["shape"])}})
    else:
        _write_record(name, None)


def forget(name: str) -> None:
    """Remove a user dataset from the registry and the manifest (built-ins cannot be removed)."""
    check_name(name)
    DATASETS.remove(name)
    _write_record(name, None)
    cache_path(f"user-{name}").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- persistence

def save_arrays(name: str, full: ArrayDataset, part: np.ndarray) -> None:
    """Save a user dataset's arrays (uint8 when the images are exact multiples of 1/255)."""
    q = (full.x * 255.0).round()
    x = q.to(torch.uint8).numpy() if torch.equal(q / 255.0, full.x) else full.x.numpy()
    save_npz(cache_path(f"user-{name}"), {"x": x, "y": full.y.numpy(), "part": part,
                                          "classes": np.array(full.classes, dtype=str),
                                          "source": np.array(full.source)})


def load_arrays(name: str) -> tuple[ArrayDataset, np.ndarray]:
    """The saved arrays of user dataset ``name``; a clear error when the file is gone or unreadable."""
    path = cache_path(f"user-{name}")
    a = load_npz(path, ("x", "y", "part", "classes", "source"))
    if a is None:
        raise ConfigError(f"name: user dataset {name!r} was registered but its saved arrays ({path}) are "
                          f"missing or unreadable; register it again")
    x = torch.from_numpy(a["x"])
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return ArrayDataset(x, torch.from_numpy(a["y"]), name, [str(c) for c in a["classes"]],
                        str(a["source"])), a["part"]


def _manifest() -> Path:
    return cache_dir("data") / "user_datasets.json"


def read_manifest() -> dict[str, Any]:
    """Recorded user datasets: name -> how to rebuild it (kind, path, options) and catalog facts."""
    try:
        out = json.loads(_manifest().read_text())
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(name: str, record: dict[str, Any] | None) -> None:
    records = read_manifest()
    if record is None and name not in records:
        return
    if record is None:
        records.pop(name, None)
    else:
        records[name] = record
    path = _manifest()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=1, default=str)
    os.replace(tmp, path)


Build = Callable[[], tuple[ArrayDataset, np.ndarray]]

#: record kind -> ``rebuilder(name, record)`` giving the function that re-reads that dataset. "arrays" is
#: here; the file formats ("folder", "cifar") are added by ``kdlab.data.user``, which reads them.
REBUILDERS: dict[str, Callable[[str, dict[str, Any]], Build]] = {
    "arrays": lambda name, _record: lambda: load_arrays(name),
}


def restore(name: str) -> bool:
    """Re-register a recorded user dataset (lazily: files are read on first ``load``); False if unknown."""
    record = read_manifest().get(name)
    if not isinstance(record, dict) or not _NAME.match(name):
        return False
    kind, info = record.get("kind"), dict(record.get("info", {}))
    if kind not in REBUILDERS:
        return False
    build = REBUILDERS[kind](name, record)
    info["shape"] = tuple(info.get("shape", ()))
    _install(name, UserData(name, build), {"n_train": N_TRAIN_PARAM}, **info)
    return True


DATASETS.fallback = restore
