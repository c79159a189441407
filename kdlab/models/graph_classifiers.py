"""Graph-level classifiers in plain torch: GCN (Kipf & Welling, ICLR 2017) and GIN (Xu, Hu, Leskovec & Jegelka,
"How Powerful are Graph Neural Networks?", ICLR 2019), with a readout over each graph's nodes and a linear head.

A batch is one block-diagonal sparse adjacency over the disjoint union of its graphs. Edges are *directed
messages* ``src -> dst``: a graph stores both directions of each edge, while a computation tree (Mirage, Gupta et
al., ICLR 2024) stores child -> parent only, so its root receives exactly the messages the node it was unrolled
from receives in the graph. The readout pools only a sample's ``roots`` (all nodes of a graph, the roots of a
tree-set), and ``train_graph_classifier`` takes per-sample ``weights`` (how often a sample is drawn). With sum
readout, GIN's graph embedding is the sum of its nodes' computation-tree root embeddings (the property Mirage
rests on); so is a GCN's with ``norm="mean"``. The symmetric GCN is only close on trees: its weights use the
degree of both ends, and a tree's leaves have lost theirs.

Defaults: 2 layers of width 64, Adam lr 0.01, batch 32. GIN: GIN-0 (eps fixed at 0, the paper's best variant),
a 2-layer MLP per layer, sum readout. GCN: symmetric normalisation D~^-1/2 (A + I) D~^-1/2, mean readout. Departures:
no batch norm in GIN's MLPs (batch statistics of tree nodes would differ from those of graph nodes) and readout from
the last layer only (the GIN paper concatenates every layer's readout).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError, ShapeError
from kdlab.registry import Param, Registry

GRAPH_CLASSIFIERS = Registry("graph classifier")

#: one sample: node features (n, F), directed message edges (2, E) src -> dst, and the nodes the readout pools
#: (a bool mask; None: every node)
Sample = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


@dataclass
class GraphBatch:
    """Samples collated into one disjoint union: ``x`` (N, F), ``edge_index`` (2, E) src -> dst, ``graph`` (N,)
    sample of each node, ``roots`` (N,) bool nodes pooled by the readout, ``num_graphs``."""

    x: torch.Tensor
    edge_index: torch.Tensor
    graph: torch.Tensor
    roots: torch.Tensor
    num_graphs: int
    _adj: dict[tuple[str, torch.dtype], torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def collate(cls, samples: Sequence[Sample]) -> GraphBatch:
        xs, es, gs, rs, offset = [], [], [], [], 0
        for i, (x, e, roots) in enumerate(samples):
            n = len(x)
            xs.append(x)
            es.append(e + offset)
            gs.append(torch.full((n,), i, dtype=torch.int64))
            rs.append(torch.ones(n, dtype=torch.bool) if roots is None else roots.to(torch.bool))
            offset += n
        if not samples:
            raise ShapeError("samples: cannot collate an empty batch")
        return cls(torch.cat(xs), torch.cat(es, 1), torch.cat(gs), torch.cat(rs), len(samples))

    def adjacency(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        """Sparse (N, N) operator with A[dst, src] = weight (cached per kind and dtype): ``sum`` (GIN: A), ``sym``
        (GCN: D~^-1/2 (A + I) D~^-1/2) or ``mean`` (D~^-1 (A + I)); D~ counts incoming messages and the self-loop."""
        key = (kind, dtype)
        if key not in self._adj:
            n = len(self.x)
            src, dst = self.edge_index
            if kind == "sum":
                idx, w = torch.stack([dst, src]), torch.ones(src.numel(), dtype=dtype)
            else:
                loops = torch.arange(n)
                src, dst = torch.cat([src, loops]), torch.cat([dst, loops])
                deg = torch.bincount(dst, minlength=n).to(dtype)
                w = deg[dst].rsqrt() * deg[src].rsqrt() if kind == "sym" else 1.0 / deg[dst]
                idx = torch.stack([dst, src])
            self._adj[key] = torch.sparse_coo_tensor(idx, w, (n, n), check_invariants=False).coalesce()
        return self._adj[key]


class GraphClassifier(nn.Module):
    """Message-passing layers, a readout over each sample's roots and a linear head; subclasses define a layer."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, layers: int, dropout: float, readout: str):
        super().__init__()
        self.layers, self.readout, self.dropout = layers, readout, dropout
        self.convs = nn.ModuleList(self.make_layer(in_features if k == 0 else hidden, hidden) for k in range(layers))
        self.head = nn.Linear(hidden, num_classes)

    def make_layer(self, a: int, b: int) -> nn.Module:
        raise NotImplementedError

    def propagate(self, k: int, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        raise NotImplementedError

    def node_embed(self, batch: GraphBatch) -> torch.Tensor:
        """(N, hidden) node embeddings after the last layer."""
        h = batch.x.to(self.head.weight.dtype)
        for k in range(self.layers):
            h = F.relu(self.propagate(k, F.dropout(h, self.dropout, self.training), batch))
        return h

    def embed(self, batch: GraphBatch) -> torch.Tensor:
        """(num_graphs, hidden) readout of each sample's root nodes (sum or mean)."""
        h = self.node_embed(batch)
        r = batch.roots
        out = torch.zeros(batch.num_graphs, h.shape[1], dtype=h.dtype).index_add_(0, batch.graph[r], h[r])
        if self.readout == "mean":
            count = torch.bincount(batch.graph[r], minlength=batch.num_graphs).clamp(min=1)
            out = out / count[:, None].to(h.dtype)
        return out

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        return self.head(F.dropout(self.embed(batch), self.dropout, self.training))


class GIN(GraphClassifier):
    """GIN layer: h' = MLP((1 + eps) h + sum over incoming messages), MLP = Linear-ReLU-Linear."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, layers: int, dropout: float, readout: str,
                 train_eps: bool):
        super().__init__(in_features, num_classes, hidden, layers, dropout, readout)
        self.eps = nn.Parameter(torch.zeros(layers), requires_grad=train_eps)

    def make_layer(self, a: int, b: int) -> nn.Module:
        return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b))

    def propagate(self, k: int, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        return self.convs[k]((1 + self.eps[k]) * h + torch.sparse.mm(batch.adjacency("sum", h.dtype), h))


class GCN(GraphClassifier):
    """GCN layer: h' = Â h W + b, Â = D~^-1/2 (A + I) D~^-1/2 (``norm="sym"``) or D~^-1 (A + I) (``"mean"``)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, layers: int, dropout: float, readout: str,
                 norm: str):
        super().__init__(in_features, num_classes, hidden, layers, dropout, readout)
        self.norm = norm

    def make_layer(self, a: int, b: int) -> nn.Module:
        return nn.Linear(a, b)

    def propagate(self, k: int, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        conv = self.convs[k]
        return torch.sparse.mm(batch.adjacency(self.norm, h.dtype), h @ conv.weight.T) + conv.bias


def _params(readout: str, **extra: Param) -> dict[str, Param]:
    return {"hidden": Param(64, "hidden units per layer", int, 1, 4096),
            "layers": Param(2, "message-passing layers (Mirage's trees must be this deep)", int, 1, 8),
            "dropout": Param(0.0, "dropout before every layer and the head", float, 0.0, 0.95),
            "readout": Param(readout, "pooling of node embeddings into a graph embedding", str,
                             choices=("sum", "mean")),
            **extra}


def register_graph_classifier(name: str, params: Mapping[str, Param], **tags: Any) -> Callable:
    """Register ``fn(in_features, num_classes, **params) -> GraphClassifier`` under ``name``."""
    return GRAPH_CLASSIFIERS.register(name, params=params, **tags)


@register_graph_classifier("gin", _params("sum", train_eps=Param(False, "learn eps (GIN-eps) or keep 0 (GIN-0)",
                                                                    bool)), family="gnn")
def gin(in_features: int, num_classes: int, **params: Any) -> nn.Module:
    """Graph isomorphism network (Xu et al. 2019), sum aggregation and readout."""
    return GIN(in_features, num_classes, **params)


@register_graph_classifier("gcn", _params("mean", norm=Param("sym", "propagation: symmetric (Kipf & Welling) or "
                                                                    "row-normalised", str, choices=("sym", "mean"))),
                           family="gnn")
def gcn(in_features: int, num_classes: int, **params: Any) -> nn.Module:
    """Graph convolutional network (Kipf & Welling 2017) with a graph readout."""
    return GCN(in_features, num_classes, **params)


def create_graph_classifier(name: str, in_features: int, num_classes: int, seed: int | None = None,
                            **params: Any) -> nn.Module:
    """Build registered graph classifier ``name``; with ``seed`` its initial weights come from that seed alone."""
    for field_name, v in (("in_features", in_features), ("num_classes", num_classes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{field_name}: expected a positive integer, got {v!r}")
    entry = GRAPH_CLASSIFIERS.entry(name, "graph classifier")
    params = GRAPH_CLASSIFIERS.validate(name, params, f"graph classifier {name!r} params")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = entry.obj(in_features, num_classes, **params)
    model.kdlab_name = name
    return model


def list_graph_classifiers() -> pd.DataFrame:
    return pd.DataFrame(GRAPH_CLASSIFIERS.table())


# ---------------------------------------------------------------------------------------------- training

def as_samples(graphs: Any) -> list[Sample]:
    """Samples from a ``GraphSet`` (its ``x`` and ``edge_index`` lists) or a sequence of samples / (x, edge_index)
    pairs."""
    if hasattr(graphs, "x") and hasattr(graphs, "edge_index") and isinstance(graphs.x, list):
        return [(x, e, None) for x, e in zip(graphs.x, graphs.edge_index, strict=True)]
    out = []
    for i, g in enumerate(graphs):
        if not isinstance(g, (tuple, list)) or len(g) not in (2, 3):
            raise ConfigError(f"graphs[{i}]: expected (x, edge_index[, roots]), got {type(g).__name__}")
        out.append((g[0], g[1], g[2] if len(g) == 3 else None))
    return out


def _labels(labels: Any, n: int) -> torch.Tensor:
    if labels is None:
        raise ConfigError("labels: graph classification needs one class label per sample, got None")
    y = torch.as_tensor(labels).to(torch.int64).reshape(-1)
    if len(y) != n:
        raise ConfigError(f"labels: expected {n} labels (one per sample), got {len(y)}")
    return y


def graph_accuracy(model: nn.Module, graphs: Any, labels: Any = None, batch_size: int = 256) -> float:
    """Share of samples whose argmax prediction is their label (``labels`` default: ``graphs.y``)."""
    samples = as_samples(graphs)
    y = _labels(graphs.y if labels is None and hasattr(graphs, "y") else labels, len(samples))
    was = model.training
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(GraphBatch.collate(samples[i:i + batch_size])).argmax(1)
                          for i in range(0, len(samples), batch_size)])
    model.train(was)
    return float((pred == y).double().mean())


def train_graph_classifier(model: nn.Module, graphs: Any, labels: Any = None, weights: Any = None,
                           epochs: int = 100, lr: float = 0.01, seed: int = 0, batch_size: int = 32,
                           weight_decay: float = 0.0, epoch_size: int | None = None,
                           val: Any = None) -> dict[str, Any]:
    """Train with Adam and cross-entropy; returns ``{"loss": per epoch, "val_acc": per epoch, "best_epoch"}``.

    Each epoch sees ``epoch_size`` samples (default: all): a shuffle when ``weights`` is None, else draws with
    replacement with probability proportional to ``weights`` (Mirage draws tree-sets by frequency). With ``val``
    (a GraphSet, or (graphs, labels)) the weights of the epoch of best validation accuracy are kept (the first of
    equals). The seed fixes the order, the draws and dropout."""
    samples = as_samples(graphs)
    y = _labels(graphs.y if labels is None and hasattr(graphs, "y") else labels, len(samples))
    if not samples:
        raise ConfigError("graphs: nothing to train on (no samples)")
    for field_name, v, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{field_name}: expected an integer >= {low}, got {v!r}")
    p = None
    if weights is not None:
        p = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if len(p) != len(samples) or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or p.sum() <= 0:
            raise ConfigError(f"weights: expected {len(samples)} finite non-negative weights with a positive sum")
    val_graphs, val_labels = (val, None) if val is None or hasattr(val, "y") else val
    n_draw = epoch_size or len(samples)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, Any] = {"loss": [], "val_acc": [], "best_epoch": epochs - 1}
    best, best_state = -1.0, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            if p is None and n_draw <= len(samples):
                order = torch.randperm(len(samples), generator=g)[:n_draw]
            else:
                probs = p if p is not None else torch.ones(len(samples), dtype=torch.float64)
                order = torch.multinomial(probs, n_draw, replacement=True, generator=g)
            total = 0.0
            for i in range(0, n_draw, batch_size):
                idx = order[i:i + batch_size].tolist()
                loss = F.cross_entropy(model(GraphBatch.collate([samples[j] for j in idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history["loss"].append(total / n_draw)
            if val_graphs is not None:
                acc = graph_accuracy(model, val_graphs, val_labels)
                history["val_acc"].append(acc)
                if acc > best:
                    best, history["best_epoch"] = acc, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
