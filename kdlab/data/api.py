"""The data API by name: ``load`` a split, ``shifted`` for domain-shifted splits, ``catalog`` of datasets."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from kdlab.data.base import DATASETS, SPLITS, ArrayDataset
from kdlab.data.shifts import ShiftLike, apply_shifts
from kdlab.errors import ConfigError

CATALOG_COLUMNS = ["name", "classes", "input shape", "train", "val", "test", "source", "params", "doc"]


def check_split(split: str) -> str:
    """``split`` if it is one of train/val/test, else a ConfigError naming the field and the choices."""
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {list(SPLITS)}")
    return split


def load(name: str, split: str = "train", seed: int = 0, **params: Any) -> ArrayDataset:
    """One split of a registered dataset; ``params`` are validated against what the dataset declares.

    The train/val/test split itself is fixed per dataset; ``seed`` only drives seeded options (``n_train``).
    """
    check_split(split)
    entry = DATASETS.entry(name, where="name")
    values = DATASETS.validate(name, params, where="params")
    out = entry.obj(split=split, seed=seed, **values)
    if not isinstance(out, ArrayDataset):
        raise ConfigError(f"name: dataset {name!r} returned {type(out).__name__}, not an ArrayDataset")
    return out


def shifted(name: str | ArrayDataset, shift: ShiftLike | Sequence[ShiftLike] = "rotate",
            severity: float = 0.5, split: str = "train", seed: int = 0, **params: Any) -> ArrayDataset:
    """A split with domain shifts applied, e.g. ``shifted("mnist5k", shift="rotate", severity=0.5)``.

    ``shift`` is a name, ``(name, severity[, params])``, a mapping, or a list of these applied in order;
    bare names use ``severity``. Deterministic given ``seed`` and ``split``.
    """
    check_split(split)
    data = name if isinstance(name, ArrayDataset) else load(name, split=split, seed=seed, **params)
    return apply_shifts(data, shift, severity=severity, seed=seed, split=split)


def _facts(name: str) -> dict[str, Any]:
    """Class count, input shape, split sizes and source: declared tags, else read with default params."""
    e = DATASETS.entry(name)
    tags = dict(e.tags)
    if not all(k in tags for k in ("classes", "shape", *SPLITS)):
        try:
            parts = {s: load(name, split=s) for s in SPLITS}
            tags.update({s: len(d) for s, d in parts.items()}, classes=parts["train"].num_classes,
                        shape=parts["train"].in_shape, source=tags.get("source") or parts["train"].source)
        except Exception as exc:  # a broken user dataset still gets a row, saying why
            tags.setdefault("source", f"unreadable: {exc}")
    shape = tags.get("shape")
    return {"name": name, "classes": tags.get("classes"), "input shape": tuple(shape) if shape else None,
            **{s: tags.get(s) for s in SPLITS}, "source": tags.get("source", ""),
            "params": ", ".join(e.params), "doc": e.doc}


def catalog() -> pd.DataFrame:
    """One row per registered dataset: name, classes, input shape, split sizes, source, params, doc."""
    return pd.DataFrame([_facts(n) for n in DATASETS.names()], columns=CATALOG_COLUMNS)
