"""Graph-classification datasets without downloads: ``load_graph_set(name, ...)`` by name, ``from_graphs`` for a
user's graphs.

A ``GraphSet`` is a list of small undirected graphs (node features, both directions of every edge) with one class
label per graph and seeded, stratified train/val/test splits. Node features are discrete (one-hot of the clipped
degree, or of the atom type): Mirage (Gupta et al., ICLR 2024) hashes computation trees by their node labels.

- ``motifs``: random base graphs (Barabási–Albert or Erdős–Rényi, networkx) with one planted motif whose type is
  the class (house, cycle-6, clique-4, 3x3 grid, ...), the synthetic benchmark style of GNNExplainer (Ying et al.,
  NeurIPS 2019). To keep it from being trivial, every graph also carries distractor motifs of types that are no
  class, and random noise edges (which may hit the motif and blur its signature). Defaults: 600 graphs, classes
  house / cycle-6 / clique-4 / 3x3 grid, BA base graphs of 12-24 nodes (one edge per new node), one distractor
  (triangle, diamond or 5-path), noise edges 10 % of the edges, degree clipped at 3 (4 features); a 2-layer GIN
  reaches about 89 % test accuracy and a GCN about 71 % (chance 25 %; Adam lr 0.003, bench/results/mirage.md).
- ``molecules``: molecule-like graphs in the regime of Mirage's datasets (small, at most 4 bonds per atom, few node
  labels), for a two-class rule in the style of MUTAG / NCI1. A skeleton of 10-25 atoms (a random tree whose new
  atoms mostly extend chains, weight 1 for a chain end and ``branching`` 0.3 for an inner atom, plus 0-2 ring
  closures making rings of 5 or 6) whose atoms are carbon or, with probability ``heteroatoms`` 0.1, N / O / S / Cl
  (35 / 35 / 15 / 15 %) as valence allows (C 4, N 3, O 2, S 2, Cl 1 bonds); node features are one-hot atom types.
  Each molecule carries one planted group on a skeleton atom: active ones a 2-amino alcohol R-CH(NH2)-CH2-OH, inactive
  ones a decoy with the same N and O, R-CH(NH2)-OH or R-CH(NH2)-CH2-CH2-OH. The label rule is "an N-C-C-O chain is
  present" (an N and an O joined through two carbons); molecules whose background atoms make such a chain of their
  own are drawn again (in both classes alike), and ``label_noise`` 0.05 of the labels are flipped. The second decoy
  has the active group's 1-hop computation trees (plus one chain carbon's), so only 2-hop trees tell it apart: a
  1-layer GIN reaches about 66 % test accuracy (a separate check, 3 seeds), a 2-layer GIN about 93 % and a GCN about
  89 % (chance 50 %, label noise caps near 95 %; bench/results/mirage.md). Defaults: 600 molecules, half active.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kdlab.data.base import DatasetRegistry, check_finite, check_labels
from kdlab.data.graphs import undirected
from kdlab.errors import ConfigError, ShapeError
from kdlab.registry import Param

GRAPH_SETS = DatasetRegistry("graph set")
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class GraphSet:
    """Graphs for graph classification: per graph node features ``x[i]`` (n_i, F) float32 and ``edge_index[i]``
    (2, E_i) int64 with both directions of every edge; labels ``y`` (G,) int64; ``splits`` maps split names to
    graph indices."""

    x: list[torch.Tensor]
    edge_index: list[torch.Tensor]
    y: Any
    name: str = "graphs"
    classes: list[str] = field(default_factory=list)
    source: str = ""
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)  # what each one-hot feature means ([]: not known)

    def __post_init__(self) -> None:
        self.y = _check_graph_labels(self.y, len(self.x), self.name)
        if len(self.edge_index) != len(self.x):
            raise ShapeError(f"{self.name}: {len(self.x)} feature matrices but {len(self.edge_index)} edge indices")
        self.x = [torch.as_tensor(v, dtype=torch.float32) for v in self.x]
        self.edge_index = [torch.as_tensor(e, dtype=torch.int64) for e in self.edge_index]
        width = self.x[0].shape[-1] if self.x and self.x[0].ndim == 2 else None
        for i, (x, e) in enumerate(zip(self.x, self.edge_index, strict=True)):
            if x.ndim != 2 or x.shape[1] != width:
                raise ShapeError(f"{self.name}: graphs[{i}] features must be (nodes, {width}), got {tuple(x.shape)}")
            if len(x) == 0:
                raise ShapeError(f"{self.name}: graphs[{i}] has no nodes; drop it or give it at least one node")
            check_finite(x, f"{self.name}: graphs[{i}]", "node feature values", item="node")
            if e.ndim != 2 or e.shape[0] != 2:
                raise ShapeError(f"{self.name}: graphs[{i}].edge_index must be (2, edges), got {tuple(e.shape)}")
            if e.numel() and (int(e.min()) < 0 or int(e.max()) >= len(x)):
                raise ShapeError(f"{self.name}: graphs[{i}].edge_index refers to nodes outside [0, {len(x)}) "
                                 f"(range [{int(e.min())}, {int(e.max())}])")
        k = int(self.y.max()) + 1 if len(self.y) else 0
        if not self.classes:
            self.classes = [str(c) for c in range(k)]
        elif len(self.classes) < k:
            raise ConfigError(f"classes: {len(self.classes)} names for labels up to {k - 1}")
        for s, idx in self.splits.items():
            self.splits[s] = np.asarray(idx, dtype=np.int64)

    # -- sizes ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_features(self) -> int:
        return int(self.x[0].shape[1]) if self.x else 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_nodes(self) -> int:
        """Nodes over all graphs."""
        return sum(len(x) for x in self.x)

    @property
    def num_edges(self) -> int:
        """Undirected edges over all graphs (each is stored twice)."""
        return sum(e.shape[1] for e in self.edge_index) // 2

    def nbytes(self) -> int:
        """Bytes to store the set as arrays: features float32, edge indices int64, one int64 label per graph."""
        return sum(x.numel() * 4 for x in self.x) + sum(e.numel() * 8 for e in self.edge_index) + 8 * len(self)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y.numpy(), minlength=self.num_classes)

    # -- subsets -------------------------------------------------------------------------------------------
    def subset(self, index: Any, name: str | None = None) -> GraphSet:
        """The graphs at ``index`` (no splits of their own)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        return GraphSet([self.x[i] for i in idx], [self.edge_index[i] for i in idx], self.y[torch.from_numpy(idx)],
                        name or self.name, list(self.classes), self.source, feature_names=list(self.feature_names))

    def split(self, name: str) -> GraphSet:
        """The ``train``, ``val`` or ``test`` graphs."""
        if name not in self.splits:
            raise ConfigError(f"split: {name!r} is not one of {sorted(self.splits) or list(SPLIT_NAMES)}"
                              + ("" if self.splits else f" ({self.name} has no splits)"))
        return self.subset(self.splits[name], f"{self.name}/{name}")

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "graphs": len(self), "nodes": self.num_nodes, "edges": self.num_edges,
                "features": self.num_features, "classes": self.num_classes,
                "mean_nodes": self.num_nodes / max(len(self), 1), "bytes": self.nbytes(),
                **{s: len(v) for s, v in self.splits.items()}}


# ---------------------------------------------------------------------------------------------- helpers

def _check_graph_labels(labels: Any, n_graphs: int, name: str) -> torch.Tensor:
    """``labels`` as int64 class ids, one per graph, or ConfigError naming ``labels``."""
    if labels is None:
        raise ConfigError(f"labels: {name}: graph classification needs one class label per graph, got None")
    y = torch.as_tensor(np.asarray(labels))
    if y.ndim != 1 or len(y) != n_graphs:
        raise ConfigError(f"labels: {name}: expected {n_graphs} labels (one per graph), got shape {tuple(y.shape)}")
    if y.is_floating_point():
        check_labels(y, f"labels: {name}", item="graph")
    elif y.dtype == torch.bool or not (y.dtype.is_signed or y.dtype == torch.uint8):
        raise ConfigError(f"labels: {name}: expected integer class ids 0, 1, ..., got {y.dtype}")
    y = y.to(torch.int64)
    if len(y) and int(y.min()) < 0:
        raise ConfigError(f"labels: {name}: class ids must be >= 0, got {int(y.min())}")
    return y


def degree_names(max_degree: int) -> list[str]:
    """Names of ``degree_features``' columns: 'degree 0', ..., 'degree 3+' (max_degree 3)."""
    return [f"degree {d}" for d in range(max_degree)] + [f"degree {max_degree}+"]


def degree_features(edge_index: torch.Tensor, num_nodes: int, max_degree: int) -> torch.Tensor:
    """One-hot of each node's degree clipped at ``max_degree``: (num_nodes, max_degree + 1) float32."""
    deg = torch.bincount(edge_index[0], minlength=num_nodes).clamp(max=max_degree)
    return torch.nn.functional.one_hot(deg, max_degree + 1).to(torch.float32)


def stratified_split(y: Any, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """Per class, ``val_fraction`` and ``test_fraction`` of the graphs (rounded, at least one each when the
    fraction is positive) for validation and test, the rest for training; sorted index arrays."""
    y = np.asarray(y)
    for field_name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"{field_name}: must lie in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"test_fraction: val_fraction + test_fraction must stay below 1, got "
                          f"{val_fraction} + {test_fraction}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLIT_NAMES}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = max(int(round(val_fraction * len(idx))), int(val_fraction > 0))
        n_test = max(int(round(test_fraction * len(idx))), int(test_fraction > 0))
        if n_val + n_test >= len(idx):
            raise ConfigError(f"test_fraction: class {c} has only {len(idx)} graphs: too few to split into "
                              f"train, val and test")
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val:n_val + n_test])
        parts["train"].append(idx[n_val + n_test:])
    return {s: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for s, v in parts.items()}


def _graph_edges(graph: Any, i: int) -> tuple[torch.Tensor, int]:
    """(edge_index with both directions, number of nodes) of a networkx graph or an (edge_index, num_nodes) pair."""
    if hasattr(graph, "nodes") and hasattr(graph, "edges"):
        order = {v: j for j, v in enumerate(graph.nodes())}
        pairs = np.array([(order[a], order[b]) for a, b in graph.edges()], dtype=np.int64).reshape(-1, 2)
        n = len(order)
    elif isinstance(graph, (tuple, list)) and len(graph) == 2:
        e, n = np.asarray(graph[0], dtype=np.int64), graph[1]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"graphs[{i}]: num_nodes must be a non-negative integer, got {n!r}")
        if e.ndim != 2 or e.shape[0] != 2:
            raise ShapeError(f"graphs[{i}]: edge_index must be (2, edges), got shape {e.shape}")
        pairs, n = e.T, int(n)
    else:
        raise ConfigError(f"graphs[{i}]: expected a networkx graph or an (edge_index, num_nodes) pair, got "
                          f"{type(graph).__name__}")
    if n == 0:
        raise ShapeError(f"graphs[{i}]: has no nodes; drop it or give it at least one node")
    try:
        return undirected(pairs, n), n
    except ShapeError as e:
        raise ShapeError(f"graphs[{i}]: {e}") from None


def from_graphs(graphs: Sequence[Any], labels: Any, features: Sequence[Any] | None = None,
                name: str = "user-graphs", classes: Sequence[str] | None = None, max_degree: int = 5,
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> GraphSet:
    """A user's graphs (networkx graphs or ``(edge_index, num_nodes)`` pairs, treated as undirected) with one
    label per graph; ``features`` one (n_i, F) array per graph, by default one-hot degrees clipped at
    ``max_degree``. Splits are stratified and seeded."""
    graphs = list(graphs)
    y = _check_graph_labels(labels, len(graphs), name)  # before any work: labels are what the task is about
    if features is not None and len(features) != len(graphs):
        raise ConfigError(f"features: expected {len(graphs)} feature matrices (one per graph), got {len(features)}")
    if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 1:
        raise ConfigError(f"max_degree: expected a positive integer, got {max_degree!r}")
    edges = [_graph_edges(g, i) for i, g in enumerate(graphs)]
    if features is None:
        xs = [degree_features(e, n, max_degree) for e, n in edges]
    else:
        xs = [torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in features]
        for i, (x, (_e, n)) in enumerate(zip(xs, edges, strict=True)):
            if x.ndim != 2 or len(x) != n:
                raise ShapeError(f"features[{i}]: expected ({n}, F) for a graph of {n} nodes, got {tuple(x.shape)}")
    splits = stratified_split(y.numpy(), val_fraction, test_fraction, seed)
    return GraphSet(xs, [e for e, _n in edges], y, name, list(classes) if classes is not None else [], "user",
                    splits, degree_names(max_degree) if features is None else [])


# ---------------------------------------------------------------------------------------------- motifs

def _cycle(k: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % k) for i in range(k)]


def _clique(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _grid(r: int, c: int) -> list[tuple[int, int]]:
    return [(i * c + j, i * c + j + 1) for i in range(r) for j in range(c - 1)] + \
           [(i * c + j, (i + 1) * c + j) for i in range(r - 1) for j in range(c)]


#: motif name -> (nodes, edges)
MOTIFS: dict[str, tuple[int, list[tuple[int, int]]]] = {
    "house": (5, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4)]),
    "cycle5": (5, _cycle(5)),
    "cycle6": (6, _cycle(6)),
    "star": (6, [(0, i) for i in range(1, 6)]),
    "clique4": (4, _clique(4)),
    "clique5": (5, _clique(5)),
    "grid": (9, _grid(3, 3)),
    "diamond": (4, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]),
    "triangle": (3, _cycle(3)),
    "path5": (5, [(i, i + 1) for i in range(4)]),
    "wheel": (6, _cycle(5) + [(5, i) for i in range(5)]),
}
MOTIF_CLASSES = ["house", "cycle6", "clique4", "grid"]


def _motif_list(value: Any, where: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    bad = [m for m in names if m not in MOTIFS]
    if bad or len(set(names)) != len(names):
        raise ConfigError(f"{where}: {bad or names} — expected distinct names among {sorted(MOTIFS)}")
    return names


def _base_graph(rng: np.random.Generator, base: str, n: int, degree: float) -> list[tuple[int, int]]:
    import networkx as nx  # lazy: slow to import, only the generator needs it

    s = int(rng.integers(2**31 - 1))
    if base == "ba":
        g = nx.barabasi_albert_graph(n, max(1, min(n - 1, int(round(degree / 2)))), seed=s)
    else:
        g = nx.gnp_random_graph(n, min(1.0, degree / max(n - 1, 1)), seed=s)
    return list(g.edges())


@GRAPH_SETS.register("motifs", params={
    "graphs": Param(600, "number of graphs (balanced over the classes)", int, 8, 100_000),
    "motifs": Param(list(MOTIF_CLASSES), f"motif of each class, among {sorted(MOTIFS)}", list),
    "distractor_motifs": Param(["triangle", "diamond", "path5"], "motifs planted as distractors (no class)", list),
    "distractors": Param(1, "distractor motifs planted in every graph", int, 0, 10),
    "base": Param("ba", "base graph: Barabási–Albert or Erdős–Rényi", str, choices=("ba", "er")),
    "base_degree": Param(2.0, "mean degree of the base graph (BA attaches round(d/2) edges per node)",
                         float, 0.5, 20.0),
    "min_nodes": Param(12, "fewest nodes of a base graph", int, 2, 10_000),
    "max_nodes": Param(24, "most nodes of a base graph", int, 2, 10_000),
    "noise_edges": Param(0.1, "random extra edges, as a share of the graph's edges (they may hit the motif)",
                         float, 0.0, 2.0),
    "max_degree": Param(3, "node features: one-hot of the degree clipped at this value", int, 1, 100),
    "val_fraction": Param(0.1, "share of each class for validation", float, 0.0, 0.9),
    "test_fraction": Param(0.2, "share of each class for test", float, 0.0, 0.9),
}, source="generated")
def motifs(graphs: int = 600, motifs: Sequence[str] = tuple(MOTIF_CLASSES),
           distractor_motifs: Sequence[str] = ("triangle", "diamond", "path5"), distractors: int = 1,
           base: str = "ba", base_degree: float = 2.0, min_nodes: int = 12, max_nodes: int = 24,
           noise_edges: float = 0.1, max_degree: int = 3, val_fraction: float = 0.1, test_fraction: float = 0.2,
           seed: int = 0) -> GraphSet:
    """Base graphs with a planted class motif, distractor motifs and noise edges; one-hot degree features."""
    classes = _motif_list(motifs, "params.motifs")
    pool = _motif_list(distractor_motifs, "params.distractor_motifs") if distractors else []
    if len(classes) < 2:
        raise ConfigError(f"params.motifs: need at least 2 classes, got {classes}")
    if set(pool) & set(classes):
        raise ConfigError(f"params.distractor_motifs: {sorted(set(pool) & set(classes))} are class motifs; "
                          "a distractor must not be a class")
    if min_nodes > max_nodes:
        raise ConfigError(f"params.min_nodes: {min_nodes} is above params.max_nodes {max_nodes}")
    rng = np.random.default_rng(seed)
    y = np.arange(graphs) % len(classes)
    rng.shuffle(y)
    xs, es = [], []
    for label in y:
        n = int(rng.integers(min_nodes, max_nodes + 1))
        edges = _base_graph(rng, base, n, base_degree)
        planted = [classes[label]] + [pool[int(rng.integers(len(pool)))] for _ in range(distractors)]
        for m in planted:
            k, medges = MOTIFS[m]
            edges += [(n + a, n + b) for a, b in medges]
            edges.append((n + int(rng.integers(k)), int(rng.integers(n))))  # one edge to a random base node
            n += k
        extra = int(round(noise_edges * len(edges)))
        edges += [tuple(rng.integers(n, size=2)) for _ in range(extra)]
        perm = rng.permutation(n)  # node order carries no information
        e = undirected(perm[np.asarray(edges, dtype=np.int64)], n)
        xs.append(degree_features(e, n, max_degree))
        es.append(e)
    splits = stratified_split(y, val_fraction, test_fraction, seed)
    src = (f"{base.upper()} base graphs of {min_nodes}-{max_nodes} nodes (mean degree {base_degree:g}), "
           f"{distractors} distractor(s) from {pool}, noise edges {noise_edges:g}")
    return GraphSet(xs, es, y, "motifs", classes, src, splits, degree_names(max_degree))


# ---------------------------------------------------------------------------------------------- molecules

#: atom types of ``molecules`` (the node features, one-hot in this order) and their valence (most bonds)
ATOMS = ("C", "N", "O", "S", "Cl")
VALENCE = (4, 3, 2, 2, 1)
#: how background heteroatoms split over N, O, S, Cl (N and O common, S and halogens rare)
HETERO_SHARES = (0.35, 0.35, 0.15, 0.15)
C, N, O = 0, 1, 2
#: planted groups as (atom types, bonds); atom 0 bonds to the skeleton. The active group, R-CH(NH2)-CH2-OH
#: (a 2-amino alcohol), and the two decoys inactive molecules carry one of: R-CH(NH2)-OH (N and O one carbon
#: apart, seen by 1-hop trees) and R-CH(NH2)-CH2-CH2-OH (three carbons apart: the same 1-hop trees as the active
#: group, told apart only by 2-hop trees)
ACTIVE = ((C, N, C, O), ((0, 1), (0, 2), (2, 3)))
DECOYS = (((C, N, O), ((0, 1), (0, 2))), ((C, N, C, C, O), ((0, 1), (0, 2), (2, 3), (3, 4))))


def _skeleton(rng: np.random.Generator, n: int, rings: int, branching: float) -> list[set[int]]:
    """A random carbon-like skeleton: a random tree of ``n`` atoms of at most 4 bonds (each new atom joins a chain
    end, or with relative weight ``branching`` an inner atom of 2 bonds, ``branching / 10`` one of 3), then up to
    ``rings`` ring closures of size 5 or 6 between atoms of at most 2 bonds."""
    adj: list[set[int]] = [set() for _ in range(n)]
    for v in range(1, n):
        deg = np.array([len(adj[u]) for u in range(v)])
        w = np.select([deg < 2, deg == 2, deg == 3], [1.0, branching, branching / 10], 0.0)
        u = int(rng.choice(v, p=w / w.sum()))
        adj[u].add(v)
        adj[v].add(u)
    for _ in range(rings):
        pairs = [(u, v) for u, dist in enumerate(_distances(adj)) for v in range(u + 1, n)
                 if dist[v] in (4, 5) and len(adj[u]) < 3 and len(adj[v]) < 3]
        if not pairs:
            break
        u, v = pairs[int(rng.integers(len(pairs)))]
        adj[u].add(v)
        adj[v].add(u)
    return adj


def _distances(adj: list[set[int]]) -> list[list[int]]:
    """Shortest-path lengths between all atoms (breadth first from each; -1: unreachable)."""
    out = []
    for s in range(len(adj)):
        dist, frontier = [-1] * len(adj), [s]
        dist[s] = 0
        while frontier:
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if dist[v] < 0:
                        dist[v] = dist[u] + 1
                        nxt.append(v)
            frontier = nxt
        out.append(dist)
    return out


def amino_alcohol(types: Sequence[int], adj: Sequence[set[int]]) -> int:
    """The ``molecules`` label rule: the number of N-C-C-O chains (an N and an O joined through two carbons, as
    atom tuples); a molecule is active when there is at least one."""
    return sum(types[b] == O for c1 in range(len(types)) if types[c1] == C for a in adj[c1] if types[a] == N
               for c2 in adj[c1] if types[c2] == C for b in adj[c2])


def _molecule(rng: np.random.Generator, n: int, group: tuple, rings: int, branching: float,
              heteroatoms: float) -> tuple[list[int], list[set[int]]]:
    """A skeleton of ``n`` atoms less the group's, background atom types (carbon, or with probability
    ``heteroatoms`` N, O, S or Cl as its valence allows) and ``group`` bonded to a skeleton atom of at most 2 bonds."""
    kinds, bonds = group
    adj = _skeleton(rng, n - len(kinds), rings, branching)
    free = [v for v in range(len(adj)) if len(adj[v]) <= 2]
    r = free[int(rng.integers(len(free)))]
    base = len(adj)
    adj += [set() for _ in kinds]
    for a, b in [(r, base)] + [(base + a, base + b) for a, b in bonds]:
        adj[a].add(b)
        adj[b].add(a)
    types = []
    for v in range(base):
        w = np.array([share * (VALENCE[1 + j] >= len(adj[v])) for j, share in enumerate(HETERO_SHARES)])
        hetero = rng.random() < heteroatoms and w.sum() > 0
        types.append(1 + int(rng.choice(len(w), p=w / w.sum())) if hetero else C)
    return types + list(kinds), adj


MAX_DRAWS = 10_000  # draws of one molecule before the rejection gives up (the defaults need ~1.1 on average)


@GRAPH_SETS.register("molecules", params={
    "graphs": Param(600, "number of molecules (half active)", int, 8, 100_000),
    "min_atoms": Param(10, "fewest atoms of a molecule", int, 8, 1_000),
    "max_atoms": Param(25, "most atoms of a molecule", int, 8, 1_000),
    "max_rings": Param(2, "most ring closures (rings of 5 or 6 atoms) per molecule", int, 0, 10),
    "branching": Param(0.3, "weight of a new skeleton atom joining an inner chain atom (a branch) against a chain "
                            "end (weight 1)", float, 0.0, 10.0),
    "heteroatoms": Param(0.1, "share of skeleton atoms that are N, O, S or Cl (not C)", float, 0.0, 0.5),
    "label_noise": Param(0.05, "share of molecules whose label is flipped", float, 0.0, 0.5),
    "val_fraction": Param(0.1, "share of each class for validation", float, 0.0, 0.9),
    "test_fraction": Param(0.2, "share of each class for test", float, 0.0, 0.9),
}, source="generated")
def molecules(graphs: int = 600, min_atoms: int = 10, max_atoms: int = 25, max_rings: int = 2,
              branching: float = 0.3, heteroatoms: float = 0.1, label_noise: float = 0.05, val_fraction: float = 0.1,
              test_fraction: float = 0.2, seed: int = 0) -> GraphSet:
    """Molecule-like graphs, active when an N-C-C-O chain is present; one-hot atom types (see the module doc)."""
    if min_atoms > max_atoms:
        raise ConfigError(f"params.min_atoms: {min_atoms} is above params.max_atoms {max_atoms}")
    rng = np.random.default_rng(seed)
    y = np.arange(graphs) % 2
    rng.shuffle(y)
    xs, es = [], []
    for label in y:
        n = int(rng.integers(min_atoms, max_atoms + 1))
        for _ in range(MAX_DRAWS):  # rejection, in both classes alike: the background must not make an N-C-C-O
            group = ACTIVE if label else DECOYS[int(rng.integers(len(DECOYS)))]
            types, adj = _molecule(rng, n, group, int(rng.integers(max_rings + 1)), branching, heteroatoms)
            if amino_alcohol(types, adj) == label:
                break
        else:
            raise ConfigError(f"params.heteroatoms: {MAX_DRAWS} draws of a {n}-atom molecule all formed an N-C-C-O of "
                              f"their own; lower heteroatoms ({heteroatoms:g}) or max_atoms ({max_atoms})")
        perm = rng.permutation(n)  # atom order carries no information
        pairs = np.array([(perm[u], perm[v]) for u in range(n) for v in adj[u] if u < v], dtype=np.int64)
        x = torch.zeros(n, len(ATOMS))
        x[torch.from_numpy(perm), torch.tensor(types)] = 1.0
        xs.append(x)
        es.append(undirected(pairs, n))
    flip = rng.choice(graphs, size=int(round(label_noise * graphs)), replace=False)
    y[flip] = 1 - y[flip]
    splits = stratified_split(y, val_fraction, test_fraction, seed)
    src = (f"random skeletons, {min_atoms}-{max_atoms} atoms with the planted group, up to {max_rings} rings of 5-6, "
           f"branching {branching:g}, heteroatoms {heteroatoms:g}; active = N-C-C-O present; label noise "
           f"{label_noise:g}")
    return GraphSet(xs, es, y, "molecules", ["inactive", "active"], src, splits, list(ATOMS))


# ---------------------------------------------------------------------------------------------- registry

def load_graph_set(name: str, seed: int = 0, **params: Any) -> GraphSet:
    """A registered graph set with validated ``params`` (unknown names and params list the valid ones)."""
    entry = GRAPH_SETS.entry(name, where="name")
    values = GRAPH_SETS.validate(name, params, where="params")
    return entry.obj(seed=seed, **values)


def register_graph_set(name: str, graph_set: GraphSet, replace: bool = False) -> None:
    """Make a user's ``graph_set`` loadable by ``load_graph_set(name)`` (this process only)."""
    if not isinstance(graph_set, GraphSet):
        raise ConfigError(f"graph_set: expected a GraphSet (see from_graphs), got {type(graph_set).__name__}")
    if replace:
        GRAPH_SETS.remove(name)

    def _user(seed: int = 0) -> GraphSet:
        return graph_set

    _user.__doc__ = f"user graph set {graph_set.name!r} ({len(graph_set)} graphs)"
    GRAPH_SETS.register(name, params={}, source="user")(_user)


def list_graph_sets() -> list[str]:
    return GRAPH_SETS.names()
