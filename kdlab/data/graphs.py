"""Node-classification graphs without downloads: ``load_graph(name, ...)`` by name, ``from_edges`` for a user's.

- ``csbm``: a contextual stochastic block model (Deshpande et al., "Contextual Stochastic Block Models",
  NeurIPS 2018): balanced classes, Gaussian node features around class means, edges inside a class with
  probability p_in and across with p_out, chosen so that the expected degree is ``avg_degree`` and the
  expected edge homophily (share of edges joining same-class nodes) is ``homophily``.
- ``karate_club``: Zachary's karate club from networkx (34 nodes, the two clubs as labels).
- ``davis_southern_women``: networkx's bipartite women/events graph; the side is the label, so every edge
  joins two classes (homophily 0): a graph where only high-frequency knowledge helps.
Graphs without node features get one-hot node identities as features (the usual choice for these graphs).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from kdlab.data.base import DatasetRegistry, check_finite, check_labels
from kdlab.errors import ConfigError, ShapeError
from kdlab.registry import Param

GRAPHS = DatasetRegistry("graph")


@dataclass
class GraphData:
    """An undirected graph for node classification: features ``x`` (N, F) float32, labels ``y`` (N,) int64,
    ``edge_index`` (2, E) with both directions of every edge and no self-loops, and boolean split masks."""

    x: torch.Tensor
    y: torch.Tensor
    edge_index: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    name: str = "graph"
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x, dtype=torch.float32)
        y = torch.as_tensor(self.y)
        if y.is_floating_point():
            check_labels(y, self.name, item="node")
        self.y = y.to(torch.int64)
        self.edge_index = torch.as_tensor(self.edge_index, dtype=torch.int64)
        n = len(self.y)
        if self.x.ndim != 2 or len(self.x) != n:
            raise ShapeError(f"{self.name}: features must be (nodes, features) with {n} rows, got "
                             f"{tuple(self.x.shape)}")
        check_finite(self.x, self.name, "node feature values", item="node",
                     fix="features must be finite; fill or drop those nodes' features")
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ShapeError(f"{self.name}: edge_index must be (2, edges), got {tuple(self.edge_index.shape)}")
        if self.edge_index.numel() and (self.edge_index.min() < 0 or self.edge_index.max() >= n):
            raise ShapeError(f"{self.name}: edge_index refers to nodes outside [0, {n})")
        for m in ("train_mask", "val_mask", "test_mask"):
            v = torch.as_tensor(getattr(self, m), dtype=torch.bool)
            if v.shape != (n,):
                raise ShapeError(f"{self.name}: {m} must be a boolean vector of length {n}, got {tuple(v.shape)}")
            setattr(self, m, v)
        if not self.classes:
            self.classes = [str(i) for i in range(int(self.y.max()) + 1 if n else 0)]

    # -- sizes ------------------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.y)

    @property
    def num_edges(self) -> int:
        """Undirected edges (each stored twice in ``edge_index``)."""
        return self.edge_index.shape[1] // 2

    @property
    def num_features(self) -> int:
        return self.x.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def edge_homophily(self) -> float:
        """Share of edges whose two ends have the same label."""
        s, d = self.edge_index
        return float((self.y[s] == self.y[d]).double().mean()) if s.numel() else float("nan")

    # -- propagation matrices (cached, sparse) ------------------------------------------------------------
    def degrees(self) -> torch.Tensor:
        return torch.bincount(self.edge_index[0], minlength=self.num_nodes).to(torch.float32)

    @cached_property
    def gcn_adj(self) -> torch.Tensor:
        """D~^-1/2 (A + I) D~^-1/2 (Kipf & Welling 2017), sparse COO float32."""
        n = self.num_nodes
        loops = torch.arange(n).repeat(2, 1)
        idx = torch.cat([self.edge_index, loops], dim=1)
        deg = torch.bincount(idx[0], minlength=n).to(torch.float32)
        w = deg[idx[0]].rsqrt() * deg[idx[1]].rsqrt()
        return torch.sparse_coo_tensor(idx, w, (n, n), check_invariants=True).coalesce()

    @cached_property
    def mean_adj(self) -> torch.Tensor:
        """D^-1 A (mean over neighbours, GraphSAGE's aggregator), sparse COO float32; isolated rows are 0."""
        n = self.num_nodes
        deg = self.degrees().clamp(min=1.0)
        w = 1.0 / deg[self.edge_index[0]]
        return torch.sparse_coo_tensor(self.edge_index, w, (n, n), check_invariants=True).coalesce()

    def to(self, device: torch.device | str) -> GraphData:
        """A copy with every tensor on ``device``."""
        out = GraphData(self.x.to(device), self.y.to(device), self.edge_index.to(device), self.train_mask.to(device),
                        self.val_mask.to(device), self.test_mask.to(device), self.name, list(self.classes),
                        self.source)
        return out

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "nodes": self.num_nodes, "edges": self.num_edges, "features": self.num_features,
                "classes": self.num_classes, "homophily": self.edge_homophily(),
                "train": int(self.train_mask.sum()), "val": int(self.val_mask.sum()), "test": int(self.test_mask.sum())}


# ---------------------------------------------------------------------------------------------- helpers

def undirected(edges: Any, n: int) -> torch.Tensor:
    """(2, E) both directions of each distinct edge, self-loops and duplicates removed, sorted.

    ``edges`` are (E, 2) node pairs; a (2, E) ``edge_index`` is read as such when E != 2."""
    e = np.asarray(edges, dtype=np.int64)
    if e.ndim != 2 or 2 not in e.shape:
        raise ShapeError(f"edges: expected (E, 2) node pairs (or a (2, E) edge_index), got shape {e.shape}")
    if e.shape[1] == 2:  # pairs, one per row
        e = e.T
    if e.size and (e.min() < 0 or e.max() >= n):
        raise ShapeError(f"edges: node ids must lie in [0, {n}), got range [{e.min()}, {e.max()}]")
    e = e[:, e[0] != e[1]]
    both = np.concatenate([e, e[::-1]], axis=1)
    keys = np.unique(both[0] * n + both[1])
    return torch.from_numpy(np.stack([keys // n, keys % n]))


def split_nodes(y: Any, train_per_class: int = 20, val_fraction: float = 0.2, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planetoid-style split: ``train_per_class`` labelled nodes per class, ``val_fraction`` of the rest for
    validation, the remaining nodes for test (boolean masks)."""
    y = np.asarray(y)
    if train_per_class < 1:
        raise ConfigError(f"train_per_class: must be >= 1, got {train_per_class}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction: must lie in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) <= train_per_class:
            raise ConfigError(f"train_per_class: class {c} has only {len(idx)} nodes; use fewer than that")
        train[rng.choice(idx, train_per_class, replace=False)] = True
    rest = rng.permutation(np.flatnonzero(~train))
    n_val = int(round(val_fraction * len(rest)))
    val = np.zeros(len(y), bool)
    val[rest[:n_val]] = True
    return train, val, ~(train | val)


def from_edges(edges: Any, labels: Any, features: Any = None, name: str = "user-graph",
               classes: Sequence[str] | None = None, train_per_class: int = 20, val_fraction: float = 0.2,
               masks: tuple[Any, Any, Any] | None = None, seed: int = 0) -> GraphData:
    """A user's graph: ``edges`` (E, 2) node pairs (treated as undirected), ``labels`` (N,), ``features``
    (N, F) (default: one-hot node ids). ``masks`` (train, val, test) override the seeded split."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise ShapeError(f"labels: expected non-negative integer class ids (N,), got {y.dtype} {y.shape}")
    n = len(y)
    edge_index = undirected(edges, n)
    x = np.eye(n, dtype=np.float32) if features is None else np.asarray(features, dtype=np.float32)
    if masks is None:
        masks = split_nodes(y, train_per_class, val_fraction, seed)
    names = list(classes) if classes is not None else [str(i) for i in range(int(y.max()) + 1 if n else 0)]
    return GraphData(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), edge_index, *masks,
                     name=name, classes=names, source="user")


def csbm_probabilities(n: int, classes: int, avg_degree: float, homophily: float) -> tuple[float, float]:
    """(p_in, p_out) giving expected degree ``avg_degree`` and expected edge homophily ``homophily``."""
    size = n / classes
    p_in = homophily * avg_degree / (size - 1)
    p_out = (1.0 - homophily) * avg_degree / (n - size) if classes > 1 else 0.0
    if p_in > 1 or p_out > 1:
        raise ConfigError(f"avg_degree: {avg_degree} is too high for {n} nodes at homophily {homophily}")
    return p_in, p_out


# ----------------------------------------------------------------------------------------- registered

@GRAPHS.register("csbm", params={
    "nodes": Param(1000, "number of nodes", int, 20, 20000),
    "classes": Param(4, "number of (balanced) classes", int, 2, 50),
    "homophily": Param(0.8, "expected share of edges joining same-class nodes", float, 0.0, 1.0),
    "avg_degree": Param(8.0, "expected node degree", float, 0.5, 200.0),
    "features": Param(32, "node feature dimension", int, 1, 4096),
    "signal": Param(1.0, "distance of the class means relative to the feature noise (per dimension)",
                    float, 0.0, 100.0),
    "train_per_class": Param(20, "labelled training nodes per class", int, 1, 10000),
    "val_fraction": Param(0.2, "share of the other nodes used for validation", float, 0.0, 0.9),
}, source="generated")
def csbm(nodes: int = 1000, classes: int = 4, homophily: float = 0.8, avg_degree: float = 8.0, features: int = 32,
         signal: float = 1.0, train_per_class: int = 20, val_fraction: float = 0.2, seed: int = 0) -> GraphData:
    """Contextual stochastic block model: Gaussian features around class means, homophily controllable."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), -(-nodes // classes))[:nodes]
    rng.shuffle(y)
    means = rng.normal(size=(classes, features)) * signal / np.sqrt(2.0)
    x = means[y] + rng.normal(size=(nodes, features))
    p_in, p_out = csbm_probabilities(nodes, classes, avg_degree, homophily)
    rows, cols = np.triu_indices(nodes, k=1)
    prob = np.where(y[rows] == y[cols], p_in, p_out)
    keep = rng.random(len(rows)) < prob
    edges = np.stack([rows[keep], cols[keep]])
    train, val, test = split_nodes(y, train_per_class, val_fraction, seed)
    return GraphData(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y), undirected(edges, nodes),
                     train, val, test, name=f"csbm-h{homophily:g}", source=f"CSBM p_in={p_in:.4g} p_out={p_out:.4g}")


def _networkx_graph(graph: Any, labels: np.ndarray, name: str, classes: list[str], train_per_class: int,
                    seed: int) -> GraphData:
    import networkx as nx  # lazy (here and below): only the networkx graphs need it, and it is slow to import

    order = {v: i for i, v in enumerate(graph.nodes())}
    edges = np.array([(order[a], order[b]) for a, b in graph.edges()], dtype=np.int64).reshape(-1, 2)
    g = from_edges(edges, labels, None, name, classes, train_per_class, 0.2, seed=seed)
    g.source = f"networkx {nx.__version__}: {name}"
    return g


@GRAPHS.register("karate_club", params={
    "train_per_class": Param(2, "labelled training nodes per class", int, 1, 15),
}, source="networkx")
def karate_club(train_per_class: int = 2, seed: int = 0) -> GraphData:
    """Zachary's karate club (networkx): 34 members, 78 ties, the two clubs after the split as labels."""
    import networkx as nx

    g = nx.karate_club_graph()
    labels = np.array([0 if g.nodes[v]["club"] == "Mr. Hi" else 1 for v in g.nodes()])
    return _networkx_graph(g, labels, "karate_club", ["Mr. Hi", "Officer"], train_per_class, seed)


@GRAPHS.register("davis_southern_women", params={
    "train_per_class": Param(3, "labelled training nodes per class", int, 1, 13),
}, source="networkx")
def davis_southern_women(train_per_class: int = 3, seed: int = 0) -> GraphData:
    """Davis' southern women (networkx): 18 women, 14 events, attendance edges; label = woman or event."""
    import networkx as nx

    g = nx.davis_southern_women_graph()
    labels = np.array([g.nodes[v]["bipartite"] for v in g.nodes()])
    return _networkx_graph(g, labels, "davis_southern_women", ["woman", "event"], train_per_class, seed)


def load_graph(name: str, seed: int = 0, **params: Any) -> GraphData:
    """A registered graph with validated ``params`` (unknown names and params list the valid ones)."""
    entry = GRAPHS.entry(name, where="name")
    values = GRAPHS.validate(name, params, where="params")
    return entry.obj(seed=seed, **values)


def register_graph(name: str, graph: GraphData, replace: bool = False) -> None:
    """Make a user's ``graph`` loadable by ``load_graph(name)`` (this process only)."""
    if not isinstance(graph, GraphData):
        raise ConfigError(f"graph: expected a GraphData (see from_edges), got {type(graph).__name__}")
    if replace:
        GRAPHS.remove(name)

    def _user(seed: int = 0) -> GraphData:
        return graph

    _user.__doc__ = f"user graph {graph.name!r} ({graph.num_nodes} nodes, {graph.num_edges} edges)"
    GRAPHS.register(name, params={}, source="user")(_user)


def list_graphs() -> list[str]:
    return GRAPHS.names()
