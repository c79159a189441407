"""Node classifiers for graph distillation: GCN and GraphSAGE teachers (plain torch sparse ops) and an MLP
student that never sees the graph (the GNN-to-MLP setting of GLNN, Zhang et al. 2022, and FF-G2M).

They take ``forward(x, graph)`` with node features (N, F) and a ``kdlab.data.graphs.GraphData`` (its cached
sparse propagation matrices), which the image model registry's ``create(name, num_classes, in_shape)``
contract cannot express; so they live in their own registry: ``create_graph_model(name, in_features,
num_classes, **params)``. GCN: Kipf & Welling, ICLR 2017; GraphSAGE (mean aggregator): Hamilton, Ying &
Leskovec, NeurIPS 2017.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError
from kdlab.registry import Param, Registry

GRAPH_MODELS = Registry("graph model")

PARAMS = {
    "hidden": Param(64, "hidden units per layer", int, 1, 8192),
    "layers": Param(2, "number of layers (the last maps to the classes)", int, 1, 16),
    "dropout": Param(0.5, "dropout before every layer", float, 0.0, 0.95),
}


class _Stack(nn.Module):
    """``layers`` linear maps with ReLU between; subclasses define how a layer mixes neighbours."""

    uses_graph = True

    def __init__(self, in_features: int, num_classes: int, hidden: int, layers: int, dropout: float, width: int = 1):
        super().__init__()
        dims = [in_features] + [hidden] * (layers - 1) + [num_classes]
        self.lins = nn.ModuleList(nn.Linear(width * a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.dropout = dropout

    def mix(self, h: torch.Tensor, graph: Any, k: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, graph: Any = None) -> torch.Tensor:
        h = x
        for k, lin in enumerate(self.lins):
            h = F.dropout(h, self.dropout, self.training)
            h = lin(self.mix(h, graph, k))
            if k < len(self.lins) - 1:
                h = F.relu(h)
        return h


class GCN(_Stack):
    """GCN: H' = Â H W + b with Â = D~^-1/2 (A + I) D~^-1/2 (Kipf & Welling; bias after propagation, as PyG)."""

    def mix(self, h: torch.Tensor, graph: Any, k: int) -> torch.Tensor:
        return torch.sparse.mm(graph.gcn_adj, h)


class GraphSAGE(_Stack):
    """GraphSAGE with the mean aggregator: H' = [H, mean_N(H)] W (self and neighbours, concatenated)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, layers: int, dropout: float):
        super().__init__(in_features, num_classes, hidden, layers, dropout, width=2)

    def mix(self, h: torch.Tensor, graph: Any, k: int) -> torch.Tensor:
        return torch.cat([h, torch.sparse.mm(graph.mean_adj, h)], dim=1)


class GraphMLP(_Stack):
    """MLP on node features alone (the graph argument is ignored): the deployable, graph-free student."""

    uses_graph = False

    def mix(self, h: torch.Tensor, graph: Any, k: int) -> torch.Tensor:
        return h


def register_graph_model(name: str, params: Mapping[str, Param] | None = None, **tags: Any) -> Callable:
    """Register ``fn(in_features, num_classes, **params) -> nn.Module`` (forward(x, graph)) under ``name``."""
    return GRAPH_MODELS.register(name, params=params if params is not None else PARAMS, **tags)


@register_graph_model("gcn", family="gnn")
def gcn(in_features: int, num_classes: int, **params: Any) -> nn.Module:
    """Graph convolutional network (Kipf & Welling 2017), sparse propagation."""
    return GCN(in_features, num_classes, **params)


@register_graph_model("sage", family="gnn")
def sage(in_features: int, num_classes: int, **params: Any) -> nn.Module:
    """GraphSAGE, mean aggregator (Hamilton et al. 2017)."""
    return GraphSAGE(in_features, num_classes, **params)


@register_graph_model("mlp", family="mlp")
def mlp(in_features: int, num_classes: int, **params: Any) -> nn.Module:
    """MLP on node features only (the GNN-to-MLP student)."""
    return GraphMLP(in_features, num_classes, **params)


def create_graph_model(name: str, in_features: int, num_classes: int, seed: int | None = None,
                       **params: Any) -> nn.Module:
    """Build registered graph model ``name`` for ``in_features`` inputs and ``num_classes`` outputs; with ``seed``
    its initial weights come from that seed alone (whatever ran before; the global generator is left as is)."""
    for field, v in (("in_features", in_features), ("num_classes", num_classes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{field}: expected a positive integer, got {v!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"seed: expected a non-negative integer or None, got {seed!r}")
    entry = GRAPH_MODELS.entry(name, "graph model")
    params = GRAPH_MODELS.validate(name, params, f"graph model {name!r} params")
    if seed is None:
        model = entry.obj(in_features, num_classes, **params)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = entry.obj(in_features, num_classes, **params)
    model.kdlab_name = name
    return model


def list_graph_models() -> pd.DataFrame:
    return pd.DataFrame(GRAPH_MODELS.table())
