"""Mirage: model-agnostic distillation of graph-classification datasets (Gupta, Manchanda, Kodamana & Ranu,
"Mirage: Model-Agnostic Graph Distillation for Graph Classification", ICLR 2024).

Key change: instead of matching gradients of one GNN, Mirage compresses what *any* L-layer message-passing GNN
computes from. Such a GNN embeds node v from v's L-hop computation tree (the unrolled neighbourhood, node features
on its nodes), and a sum-pooled graph embedding is the sum over its nodes' tree root embeddings. Per class, Mirage
turns each training graph into the set of its computation trees (a transaction), mines the tree-sets that
co-occur in at least a share ``threshold`` of the class's graphs (frequent itemsets, FP-growth in the paper), and
keeps them with their frequencies. A GNN then trains on tree-sets drawn by frequency, pooling only tree roots.
No model is trained during distillation; only the number of layers L is fixed.

kdlab defaults: L = 2 (the paper uses 1-3 hops by dataset), threshold 0.1 of each class's graphs (the authors'
configurations range over about 0.02-0.35), at most 256 tree-sets per class (the most frequent), tree-sets shared
by several classes kept (the authors' main code keeps them; ``exclusive=True`` drops them, as their NCI1 script
does), draws proportional to frequency within a class and to the class's share of the training graphs across
classes. The GNN is evaluated, as in the authors' code, at the epoch of best validation accuracy on real graphs;
``evaluate_mirage`` trains with Adam at lr 0.003 (at 0.01 full-data training was erratic on ``molecules``).

Checked against the released code (github.com/frigategnn/Mirage): the same trees (unrolled over every neighbour,
messages child -> parent), transactions of distinct trees per graph, per-class FP-growth with an absolute threshold,
a readout over tree roots only, and test graphs evaluated whole. Where Mirage loses accuracy is not in these steps
but at test time: nodes whose computation tree is not in the distilled set add root embeddings the model never
trained on (``coverage`` measures their share, ``covered_samples`` scores a model without them, a diagnostic);
so Mirage stays close to full-data training only where trees repeat (bench/results/mirage.md).

Departures from the paper: the frequent tree-sets are enumerated best-first by support (exactly FP-growth's
output, in order of frequency) so that ``max_sets`` can cap the set without mining every frequent itemset; the
canonical tree code is the WL-style refinement (a node's code is its feature label with the sorted codes of its
neighbours' codes one hop shallower), equal exactly for isomorphic computation trees; single-node trees (isolated
nodes) are kept (the released code drops them); the released code's training draws tree-sets uniformly (its
frequency draw is computed, then overwritten); kdlab draws by frequency, as the paper describes. The released
models (GCN, GIN, GAT with edge features) sum-pool for every GNN and train with dropout 0.5-0.6, weight decay 1e-2,
128 units; kdlab's GCN keeps its mean readout, and its models have no dropout or weight decay by default (neither
closed the gap in a check on ``molecules``).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdlab.data.graph_sets import GraphSet
from kdlab.errors import ConfigError, ShapeError
from kdlab.models.graph_classifiers import (
    Sample,
    create_graph_classifier,
    graph_accuracy,
    train_graph_classifier,
)

#: most tree-sets looked at per class before the best-first mining stops (it then keeps what it found)
MAX_VISITS = 200_000


# ------------------------------------------------------------------------------------------ computation trees

def feature_labels(xs: Sequence[torch.Tensor]) -> tuple[list[np.ndarray], np.ndarray]:
    """Discrete node labels: each distinct feature row gets an id (rows sorted, so ids do not depend on the order
    of the graphs). Returns per-graph label arrays and the (V, F) table of distinct rows."""
    rows = torch.cat([torch.as_tensor(x, dtype=torch.float32) for x in xs]).numpy()
    table, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    out, start = [], 0
    for x in xs:
        out.append(inverse[start:start + len(x)].astype(np.int64))
        start += len(x)
    return out, table.astype(np.float32)


def neighbours(edge_index: Any, num_nodes: int) -> list[list[int]]:
    """Per node, the sources of the messages it receives (its neighbours; repeated edges repeat)."""
    src, dst = np.asarray(edge_index, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(num_nodes)]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        out[d].append(s)
    return out


def unroll(edge_index: Any, num_nodes: int, root: int, layers: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``layers``-hop computation tree of ``root``, explicitly: (original node of each tree node, parent tree
    node or -1), breadth first. Every tree node at depth < layers has one child per neighbour of its node."""
    nbrs = neighbours(edge_index, num_nodes)
    nodes, parent, depth = [root], [-1], [0]
    i = 0
    while i < len(nodes):
        if depth[i] < layers:
            for u in nbrs[nodes[i]]:
                nodes.append(u)
                parent.append(i)
                depth.append(depth[i] + 1)
        i += 1
    return np.asarray(nodes, dtype=np.int64), np.asarray(parent, dtype=np.int64)


def tree_key(labels: Sequence[int], parent: Sequence[int]) -> str:
    """Canonical string of a rooted tree with node labels (root = the node with parent -1): ``label(children)``
    with the children's strings sorted (AHU encoding; equal exactly for isomorphic labelled trees)."""
    children: list[list[int]] = [[] for _ in labels]
    root = -1
    for i, p in enumerate(parent):
        if p < 0:
            root = i
        else:
            children[p].append(i)

    def key(i: int) -> str:
        return f"{int(labels[i])}(" + ",".join(sorted(key(c) for c in children[i])) + ")"

    return key(root)


@dataclass
class TreeBook:
    """Codes of computation trees: code -> (root label, sorted child codes). Equal codes within one book mean
    isomorphic trees (by induction on depth), so a code is the tree's hash; ``key`` is its canonical string."""

    entries: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    index: dict[tuple[int, tuple[int, ...]], int] = field(default_factory=dict)
    _keys: dict[int, str] = field(default_factory=dict, repr=False)

    def code(self, label: int, children: tuple[int, ...]) -> int:
        entry = (int(label), children)
        if entry not in self.index:
            self.index[entry] = len(self.entries)
            self.entries.append(entry)
        return self.index[entry]

    def encode(self, labels: np.ndarray, edge_index: Any, layers: int) -> np.ndarray:
        """Code of every node's ``layers``-hop computation tree (node labels ``labels``)."""
        nbrs = neighbours(edge_index, len(labels))
        lab = labels.tolist()
        codes = [self.code(a, ()) for a in lab]
        for _ in range(layers):
            codes = [self.code(lab[v], tuple(sorted(codes[u] for u in nbrs[v]))) for v in range(len(lab))]
        return np.asarray(codes, dtype=np.int64)

    def key(self, code: int) -> str:
        """Canonical string of tree ``code`` (the format of ``tree_key``)."""
        if code not in self._keys:
            label, children = self.entries[code]
            self._keys[code] = f"{label}(" + ",".join(sorted(self.key(c) for c in children)) + ")"
        return self._keys[code]

    def materialize(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """Tree ``code`` as (node labels, parent or -1), breadth first, children in canonical order."""
        labels, parent, codes = [self.entries[code][0]], [-1], [code]
        i = 0
        while i < len(codes):
            for c in sorted(self.entries[codes[i]][1], key=self.key):
                labels.append(self.entries[c][0])
                parent.append(i)
                codes.append(c)
            i += 1
        return np.asarray(labels, dtype=np.int64), np.asarray(parent, dtype=np.int64)


# ------------------------------------------------------------------------------------------ frequent tree-sets

def _bits(items: Sequence[int]) -> int:
    out = 0
    for i in items:
        out |= 1 << i
    return out


def frequent_itemsets(transactions: Sequence[set[int]], min_support: int, max_sets: int | None = None,
                      order: dict[int, Any] | None = None, reject: Any = None,
                      stats: dict[str, Any] | None = None) -> list[tuple[tuple[int, ...], int]]:
    """Itemsets contained in at least ``min_support`` transactions, with their support, most frequent first.

    Best-first over the itemset lattice (support never grows with the set), so the output is FP-growth's set of
    frequent itemsets in order of support; ``max_sets`` stops after that many. Items are ranked by ``order[item]``
    among equal supports (default: the item), which fixes ties. ``reject(itemset)`` true: not output (its
    supersets are still explored). After ``MAX_VISITS`` itemsets the search stops with what it has (the most
    frequent); ``stats``, when given, receives ``visits`` and ``complete`` (False when it stopped early)."""
    if min_support < 1:
        raise ConfigError(f"min_support: must be >= 1, got {min_support}")
    tids: dict[int, int] = {}
    for t, items in enumerate(transactions):
        for i in items:
            tids[i] = tids.get(i, 0) | (1 << t)
    freq = [(i, b, b.bit_count()) for i, b in tids.items() if b.bit_count() >= min_support]
    freq.sort(key=lambda r: (-r[2], order[r[0]] if order is not None else r[0]))
    heap = [(-s, (k,), k, b) for k, (_i, b, s) in enumerate(freq)]
    heapq.heapify(heap)
    out: list[tuple[tuple[int, ...], int]] = []
    visits = 0
    while heap and (max_sets is None or len(out) < max_sets) and visits < MAX_VISITS:
        neg, ranks, last, bits = heapq.heappop(heap)
        visits += 1
        items = tuple(freq[r][0] for r in ranks)
        if reject is None or not reject(items):
            out.append((items, -neg))
        for k in range(last + 1, len(freq)):
            b = bits & freq[k][1]
            s = b.bit_count()
            if s >= min_support:
                heapq.heappush(heap, (-s, ranks + (k,), k, b))
    if stats is not None:
        stats.update(visits=visits, complete=not heap or (max_sets is not None and len(out) >= max_sets))
    return out


# ------------------------------------------------------------------------------------------ the distilled set

@dataclass
class MirageSet:
    """Mirage's distilled dataset: computation trees (node features, child -> parent edges, their support per
    class) and tree-sets (their trees, class and frequency = graphs of that class containing all of them)."""

    tree_x: np.ndarray  # (nodes of all trees, F) float32
    tree_edges: np.ndarray  # (2, edges of all trees) int64, child -> parent, local to each tree
    tree_nodes: np.ndarray  # (T,) nodes per tree
    tree_support: np.ndarray  # (T, K) training graphs of each class containing the tree
    set_trees: np.ndarray  # (memberships,) tree indices of every tree-set, concatenated
    set_sizes: np.ndarray  # (S,) trees per set
    set_class: np.ndarray  # (S,)
    set_support: np.ndarray  # (S,) frequency
    classes: list[str]
    layers: int
    feature_table: np.ndarray  # (V, F) distinct node feature rows: the node labels of the tree keys
    tree_keys: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tree_x = np.asarray(self.tree_x, dtype=np.float32)
        self.feature_table = np.asarray(self.feature_table, dtype=np.float32)
        for name in ("tree_edges", "tree_nodes", "tree_support", "set_trees", "set_sizes", "set_class",
                     "set_support"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        self.tree_edges = self.tree_edges.reshape(2, -1)
        self.tree_support = self.tree_support.reshape(len(self.tree_nodes), -1)
        if self.tree_nodes.sum() != len(self.tree_x) or self.tree_edges.shape[1] != len(self.tree_x) - \
                len(self.tree_nodes):
            raise ShapeError(f"mirage set: {len(self.tree_x)} tree nodes and {self.tree_edges.shape[1]} edges do not "
                             f"make {len(self.tree_nodes)} trees of {self.tree_nodes.sum()} nodes")
        if self.set_sizes.sum() != len(self.set_trees) or not len(self.set_sizes) == len(self.set_class) == \
                len(self.set_support):
            raise ShapeError("mirage set: set_sizes, set_class and set_support must describe the same tree-sets")

    # -- sizes --------------------------------------------------------------------------------------------
    @property
    def num_trees(self) -> int:
        return len(self.tree_nodes)

    @property
    def num_sets(self) -> int:
        return len(self.set_sizes)

    @property
    def num_nodes(self) -> int:
        return len(self.tree_x)

    @property
    def num_edges(self) -> int:
        return self.tree_edges.shape[1]

    def nbytes(self) -> int:
        """Bytes a user stores to train on the set: tree features and edges, tree sizes, the tree-sets (members,
        sizes, class, frequency) and the feature table; the per-class tree supports and canonical strings (analysis
        only) are left out."""
        return int(sum(a.nbytes for a in (self.tree_x, self.tree_edges, self.tree_nodes, self.set_trees,
                                          self.set_sizes, self.set_class, self.set_support, self.feature_table)))

    def compression(self) -> dict[str, float]:
        """The distilled set against the training set it came from: bytes, nodes, edges and their ratios."""
        full = self.meta.get("full", {})
        out = {"bytes_distilled": float(self.nbytes()), "nodes_distilled": float(self.num_nodes),
               "edges_distilled": float(self.num_edges), "tree_sets": float(self.num_sets),
               "trees": float(self.num_trees)}
        for k in ("bytes", "nodes", "edges", "graphs"):
            if k in full:
                out[f"{k}_full"] = float(full[k])
        if "bytes_full" in out:
            out["compression"] = out["bytes_full"] / max(out["bytes_distilled"], 1.0)
            out["node_ratio"] = out["nodes_full"] / max(out["nodes_distilled"], 1.0)
        return out

    def summary(self) -> dict[str, Any]:
        per_class = np.bincount(self.set_class, minlength=len(self.classes)).tolist()
        return {"layers": self.layers, "trees": self.num_trees, "tree_sets": self.num_sets,
                "sets_per_class": dict(zip(self.classes, per_class, strict=True)), **self.compression()}

    # -- trees and samples ----------------------------------------------------------------------------------
    def tree(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tree ``i``: node features (n, F) and child -> parent edges (2, n - 1); node 0 is the root."""
        n0 = int(self.tree_nodes[:i].sum())
        n = int(self.tree_nodes[i])
        e0 = n0 - i
        return (torch.from_numpy(self.tree_x[n0:n0 + n].copy()),
                torch.from_numpy(self.tree_edges[:, e0:e0 + n - 1].copy()))

    def samples(self) -> list[Sample]:
        """Each tree-set as one sample: the disjoint union of its trees, the readout pooling only their roots."""
        trees = [self.tree(i) for i in range(self.num_trees)]
        out, start = [], 0
        for size in self.set_sizes.tolist():
            out.append(_forest([trees[t] for t in self.set_trees[start:start + size].tolist()]))
            start += size
        return out

    def weights(self) -> np.ndarray:
        """Draw probability of each tree-set: its class's share of the training graphs, split within the class
        in proportion to frequency."""
        graphs = np.asarray(self.meta.get("graphs_per_class", np.ones(len(self.classes))), dtype=np.float64)
        prior = graphs / graphs.sum()
        totals = np.bincount(self.set_class, weights=self.set_support, minlength=len(self.classes))
        return prior[self.set_class] * self.set_support / totals[self.set_class]

    # -- files -------------------------------------------------------------------------------------------
    ARRAYS = ("tree_x", "tree_edges", "tree_nodes", "tree_support", "set_trees", "set_sizes", "set_class",
              "set_support", "feature_table")

    def save(self, path: str | Path) -> Path:
        """An ``.npz`` with the arrays and a JSON header (classes, layers, tree keys, meta)."""
        path = Path(path)
        header = json.dumps({"classes": self.classes, "layers": self.layers, "tree_keys": self.tree_keys,
                             "meta": self.meta})
        with open(path, "wb") as f:
            np.savez_compressed(f, header=np.array(header), **{k: getattr(self, k) for k in self.ARRAYS})
        return path

    @classmethod
    def load(cls, path: str | Path) -> MirageSet:
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in cls.ARRAYS}
        return cls(**arrays, classes=header["classes"], layers=header["layers"], tree_keys=header["tree_keys"],
                   meta=header["meta"])


def _forest(trees: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Sample:
    """The disjoint union of trees (features, child -> parent edges, root first) as one sample pooling their roots."""
    xs, es, roots, offset = [], [], [], 0
    for x, e in trees:
        xs.append(x)
        es.append(e + offset)
        r = torch.zeros(len(x), dtype=torch.bool)
        r[0] = True
        roots.append(r)
        offset += len(x)
    return torch.cat(xs), torch.cat(es, 1), torch.cat(roots)


def _tie_rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def distill_graphs(train_set: GraphSet, layers: int = 2, threshold: float = 0.1, max_sets: int | None = 256,
                   exclusive: bool = False, seed: int = 0) -> MirageSet:
    """Mirage's distilled set of ``train_set``: per class, the tree-sets (of ``layers``-hop computation trees)
    found in at least ``threshold`` of its graphs, the ``max_sets`` most frequent (None: all); ``exclusive`` drops
    tree-sets as frequent in another class. ``seed`` only orders equally frequent trees (which tie fills the last
    places under ``max_sets``); the mining is otherwise deterministic and independent of the order of the graphs."""
    if not isinstance(train_set, GraphSet):
        raise ConfigError(f"train_set: expected a kdlab.data.graph_sets.GraphSet (see from_graphs), got "
                          f"{type(train_set).__name__}")
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= 6:
        raise ConfigError(f"layers: expected an integer in [1, 6] (the GNN's number of layers), got {layers!r}")
    if not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold: expected a share of each class's graphs in (0, 1], got {threshold!r}")
    if max_sets is not None and (isinstance(max_sets, bool) or not isinstance(max_sets, int) or max_sets < 1):
        raise ConfigError(f"max_sets: expected a positive integer or None, got {max_sets!r}")
    if len(train_set) == 0:
        raise ConfigError("train_set: has no graphs")
    t0 = time.perf_counter()
    labels, table = feature_labels(train_set.x)
    book = TreeBook()
    transactions = [set(book.encode(lab, e.numpy(), layers).tolist())
                    for lab, e in zip(labels, train_set.edge_index, strict=True)]
    y = train_set.y.numpy()
    k = train_set.num_classes
    per_class = [[t for t, c in zip(transactions, y, strict=True) if c == cls] for cls in range(k)]
    min_support = [max(1, math.ceil(threshold * len(p))) for p in per_class]
    tids = [{} for _ in range(k)]  # class -> tree -> bitset of that class's graphs containing it
    for cls, trans in enumerate(per_class):
        for t, items in enumerate(trans):
            for i in items:
                tids[cls][i] = tids[cls].get(i, 0) | (1 << t)

    def frequent_elsewhere(items: tuple[int, ...], cls: int) -> bool:
        for other in range(k):
            if other == cls or not per_class[other]:
                continue
            bits = tids[other].get(items[0], 0)
            for i in items[1:]:
                bits &= tids[other].get(i, 0)
            if bits.bit_count() >= min_support[other]:
                return True
        return False

    sets: list[tuple[tuple[int, ...], int, int]] = []
    complete = []
    for cls in range(k):
        if not per_class[cls]:
            continue
        order = {i: _tie_rank(seed, book.key(i)) for i in tids[cls]}
        reject = (lambda items, c=cls: frequent_elsewhere(items, c)) if exclusive else None
        stats: dict[str, Any] = {}
        sets += [(items, s, cls) for items, s in frequent_itemsets(per_class[cls], min_support[cls], max_sets, order,
                                                                   reject, stats)]
        complete.append(stats["complete"])
    used = sorted({i for items, _s, _c in sets for i in items}, key=book.key)
    position = {code: j for j, code in enumerate(used)}
    xs, edges, sizes = [], [], []
    for code in used:
        lab, parent = book.materialize(code)
        xs.append(table[lab])
        edges.append(np.stack([np.arange(1, len(lab)), parent[1:]]))
        sizes.append(len(lab))
    support = np.array([[tids[c].get(code, 0).bit_count() for c in range(k)] for code in used],
                       dtype=np.int64).reshape(len(used), k)
    members = [sorted(position[i] for i in items) for items, _s, _c in sets]
    full = {"bytes": train_set.nbytes(), "nodes": train_set.num_nodes, "edges": train_set.num_edges,
            "graphs": len(train_set)}
    meta = {"method": "mirage", "dataset": train_set.name, "threshold": float(threshold), "max_sets": max_sets,
            "exclusive": bool(exclusive), "seed": int(seed), "min_support": min_support,
            "mining_complete": all(complete),
            "graphs_per_class": [len(p) for p in per_class], "distinct_trees": len(set().union(*transactions)),
            "full": full, "seconds": time.perf_counter() - t0, "feature_names": list(train_set.feature_names)}
    f = train_set.num_features
    return MirageSet(np.concatenate(xs) if xs else np.zeros((0, f), np.float32),
                     np.concatenate(edges, 1) if edges else np.zeros((2, 0), np.int64), np.asarray(sizes, np.int64),
                     support, np.asarray([i for m in members for i in m], np.int64),
                     np.asarray([len(m) for m in members], np.int64), np.asarray([c for _i, _s, c in sets], np.int64),
                     np.asarray([s for _i, s, _c in sets], np.int64), list(train_set.classes), layers, table,
                     [book.key(c) for c in used], meta)


def _node_tree_keys(mirage_set: MirageSet, graph_set: GraphSet) -> list[list[str]]:
    """Per graph, the canonical key of every node's computation tree (node labels from the set's feature table)."""
    ids = {row.tobytes(): i for i, row in enumerate(mirage_set.feature_table)}
    book, out = TreeBook(), []
    for x, e in zip(graph_set.x, graph_set.edge_index, strict=True):
        rows = x.numpy().astype(np.float32)
        labels = np.array([ids.setdefault(r.tobytes(), len(ids)) for r in rows], dtype=np.int64)
        out.append([book.key(c) for c in book.encode(labels, e.numpy(), mirage_set.layers).tolist()])
    return out


def coverage(mirage_set: MirageSet, graph_set: GraphSet) -> float:
    """Share of the nodes of ``graph_set`` whose computation tree is one of the distilled trees: how much of what
    an L-layer GNN computes on these graphs the distilled set shows it (high when tree frequencies are skewed)."""
    keys = set(mirage_set.tree_keys)
    per_graph = _node_tree_keys(mirage_set, graph_set)
    return sum(k in keys for g in per_graph for k in g) / max(sum(len(g) for g in per_graph), 1)


def covered_samples(mirage_set: MirageSet, graph_set: GraphSet) -> list[Sample]:
    """Each graph as the disjoint union of its distinct computation trees that the distilled set holds (the readout
    pools their roots); a graph with none stays whole. A diagnostic, not a way to evaluate: a model trained on the
    Mirage set scores on these what it would if test graphs held no tree it never saw (the authors' code builds the
    same reconstruction of the test graphs, then evaluates on the graphs themselves)."""
    index = {k: i for i, k in enumerate(mirage_set.tree_keys)}
    out: list[Sample] = []
    for g, keys in enumerate(_node_tree_keys(mirage_set, graph_set)):
        trees = [mirage_set.tree(index[k]) for k in dict.fromkeys(keys) if k in index]
        out.append(_forest(trees) if trees else (graph_set.x[g], graph_set.edge_index[g], None))
    return out


# ------------------------------------------------------------------------------------------ training, evaluation

def train_on_mirage(model: nn.Module, mirage_set: MirageSet, epochs: int = 100, lr: float = 0.01, seed: int = 0,
                    batch_size: int = 32, sampling: str = "frequency", val: Any = None,
                    weight_decay: float = 0.0) -> dict[str, Any]:
    """Train a graph classifier on the tree-sets: each epoch draws as many tree-sets as the training split had
    graphs, by frequency (``sampling="frequency"``, the paper) or uniformly (``"uniform"``, the released code)."""
    if sampling not in ("frequency", "uniform"):
        raise ConfigError(f"sampling: {sampling!r} is not one of ['frequency', 'uniform']")
    if mirage_set.num_sets == 0:
        raise ConfigError("mirage_set: has no tree-sets; lower threshold (fewer graphs must share a tree-set)")
    depth = getattr(model, "layers", None)
    if depth is not None and depth > mirage_set.layers:
        raise ConfigError(f"model: has {depth} message-passing layers but the Mirage set holds {mirage_set.layers}-hop "
                          f"computation trees; distill with layers={depth}")
    weights = mirage_set.weights() if sampling == "frequency" else np.ones(mirage_set.num_sets)
    n = int(sum(mirage_set.meta.get("graphs_per_class", [mirage_set.num_sets])))
    return train_graph_classifier(model, mirage_set.samples(), mirage_set.set_class, weights, epochs, lr, seed,
                                  batch_size, weight_decay, epoch_size=n, val=val)


def evaluate_mirage(train_set: GraphSet, test_set: GraphSet, mirage_set: MirageSet,
                    models: Sequence[str] = ("gcn", "gin"), epochs: int = 100, lr: float = 0.003, seed: int = 0,
                    model_params: dict[str, dict[str, Any]] | None = None, val_set: GraphSet | None = None
                    ) -> pd.DataFrame:
    """Each model trained from the same initial weights on the full training graphs and on the Mirage set (both
    kept at their epoch of best accuracy on ``val_set`` when given): test accuracy, training seconds and the size
    of what it trained on (one row per model and data)."""
    comp = mirage_set.compression()
    rows = []
    for name in models:
        params = {"layers": mirage_set.layers, **(model_params or {}).get(name, {})}
        for data in ("full", "mirage"):
            model = create_graph_classifier(name, train_set.num_features, train_set.num_classes, seed=seed, **params)
            t0 = time.perf_counter()
            if data == "full":
                train_graph_classifier(model, train_set, epochs=epochs, lr=lr, seed=seed, val=val_set)
            else:
                train_on_mirage(model, mirage_set, epochs=epochs, lr=lr, seed=seed, val=val_set)
            seconds = time.perf_counter() - t0
            rows.append({"model": name, "data": data, "test_acc": graph_accuracy(model, test_set), "seconds": seconds,
                         "nodes": comp["nodes_full"] if data == "full" else comp["nodes_distilled"],
                         "bytes": comp["bytes_full"] if data == "full" else comp["bytes_distilled"],
                         "compression": 1.0 if data == "full" else comp["compression"], "seed": seed})
    return pd.DataFrame(rows)
