"""GNN-to-MLP distillation on one graph: loss functions, a graph-method registry and a full-batch trainer.

The image ``Distiller`` contract (mini-batches of independent samples, ``forward(x)``) cannot carry a graph:
the FF-G2M losses couple the outputs of neighbouring nodes. Graph methods therefore have their own small
registry (``GRAPH_METHODS``, same ``Param`` declarations) and trainer (``train_graph``): full-batch, node
classification, transductive (the teacher's outputs on every node are the soft targets; labels only on the
training nodes), best weights by validation accuracy.

Methods:
- ``graph_vanilla``: cross-entropy on the labelled nodes (how teachers and the plain MLP are trained);
- ``g2m_kd``: vanilla GNN-to-MLP KD (GLNN: Zhang, Liu, Sun & Shah, "Graph-less Neural Networks: Teaching
  Old MLPs New Tricks via Distillation", ICLR 2022): lambda * CE + (1 - lambda) * KL(p_t || p_s) on all nodes;
- ``ff_g2m``: Wu, Lin, Zhao, Xu, Huang & Li, "Extracting Low-/High-Frequency Knowledge from Graph Neural
  Networks and Injecting it into MLPs: An Effective GNN-to-MLP Distillation Framework" (AAAI 2023):
  lambda * CE + (1 - lambda) * (LFD + HFD), with
  LFD = mean over edges (i, j) and self-loops (i, i) of KL(softmax(z_j / tau_low) || softmax(h_i / tau_low))
  (the student at node i takes the teacher's output at its neighbour j: low-frequency, shared knowledge);
  HFD = mean over edges (i, j) of KL(softmax(|z_i - z_j| / tau_high) || softmax(|h_i - h_j| / tau_high))
  (the student reproduces how the teacher's outputs differ across an edge: high-frequency knowledge).
  z are teacher logits, h student logits. Each term is a mean over its pairs (the paper sums and divides
  by |E|); both directions of every undirected edge are pairs.
"""
from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.graphs import GraphData
from kdlab.errors import ConfigError, ShapeError
from kdlab.registry import Param, Registry

GRAPH_METHODS = Registry("graph method")
LAMBDA = Param(0.5, "lambda: weight of the label cross-entropy; distillation terms get 1 - lambda", float, 0.0, 1.0)


def _kl_rows(target_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(student)) of each row."""
    lt, ls = F.log_softmax(target_logits, dim=1), F.log_softmax(student_logits, dim=1)
    return (lt.exp() * (lt - ls)).sum(1)


def with_self_loops(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """``edge_index`` plus (i, i) for every node."""
    loops = torch.arange(n, device=edge_index.device).repeat(2, 1)
    return torch.cat([edge_index, loops], dim=1)


def lfd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, edge_index: torch.Tensor,
             tau: float = 1.0) -> torch.Tensor:
    """FF-G2M low-frequency distillation: mean over edges and self-loops (i, j) of
    KL(softmax(z_j / tau) || softmax(h_i / tau))."""
    pairs = with_self_loops(edge_index, len(student_logits))
    i, j = pairs
    return _kl_rows(teacher_logits[j] / tau, student_logits[i] / tau).mean()


def hfd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, edge_index: torch.Tensor,
             tau: float = 1.0) -> torch.Tensor:
    """FF-G2M high-frequency distillation: mean over edges (i, j) of
    KL(softmax(|z_i - z_j| / tau) || softmax(|h_i - h_j| / tau)); 0 on a graph without edges."""
    if edge_index.shape[1] == 0:
        return student_logits.sum() * 0.0
    i, j = edge_index
    dt = (teacher_logits[i] - teacher_logits[j]).abs() / tau
    ds = (student_logits[i] - student_logits[j]).abs() / tau
    return _kl_rows(dt, ds).mean()


def node_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """GLNN's soft-target term: mean over nodes of KL(softmax(z_i / tau) || softmax(h_i / tau))."""
    return _kl_rows(teacher_logits / tau, student_logits / tau).mean()


def register_graph_method(name: str, **tags: Any) -> Callable:
    """Register a ``GraphMethod`` subclass under ``name`` (its ``params`` are declared)."""

    def wrap(cls: type) -> type:
        cls.method_name = name
        return GRAPH_METHODS.register(name, **tags)(cls)

    return wrap


class GraphMethod:
    """A graph distillation objective: ``losses(student_logits, graph)`` -> named, weighted terms (summed by
    the trainer). ``teacher_logits`` (N, C) are the frozen teacher's outputs on every node."""

    params: ClassVar[dict[str, Param]] = {}
    uses_teacher: ClassVar[bool] = True
    method_name: ClassVar[str] = "graph_method"

    def __init__(self, teacher_logits: torch.Tensor | None = None, **hp: Any):
        if self.uses_teacher and teacher_logits is None:
            raise ConfigError(f"graph method {self.method_name!r} needs the teacher's logits")
        self.teacher_logits = teacher_logits.detach() if teacher_logits is not None else None
        self.hp = hp

    def ce(self, logits: torch.Tensor, graph: GraphData) -> torch.Tensor:
        """Cross-entropy on the labelled (training) nodes."""
        return F.cross_entropy(logits[graph.train_mask], graph.y[graph.train_mask])

    def losses(self, logits: torch.Tensor, graph: GraphData) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@register_graph_method("graph_vanilla")
class GraphVanilla(GraphMethod):
    """Cross-entropy on the labelled nodes only (no teacher)."""

    uses_teacher = False

    def losses(self, logits: torch.Tensor, graph: GraphData) -> dict[str, torch.Tensor]:
        return {"ce": self.ce(logits, graph)}


@register_graph_method("g2m_kd")
class GraphKD(GraphMethod):
    """Vanilla GNN-to-MLP KD (GLNN): lambda * CE + (1 - lambda) * KL(p_t^tau || p_s^tau) on every node."""

    params = {"lam": LAMBDA, "tau": Param(1.0, "softmax temperature of the soft targets", float, 0.05, 100.0)}

    def losses(self, logits: torch.Tensor, graph: GraphData) -> dict[str, torch.Tensor]:
        lam = self.hp["lam"]
        return {"ce": lam * self.ce(logits, graph),
                "kd": (1 - lam) * node_kd_loss(logits, self.teacher_logits, self.hp["tau"])}


@register_graph_method("ff_g2m")
class FFG2M(GraphMethod):
    """FF-G2M: lambda * CE + (1 - lambda) * (LFD + HFD), low- and high-frequency distillation over edges."""

    params = {"lam": LAMBDA,
              "tau_low": Param(1.0, "temperature of the low-frequency (neighbour output) KL", float, 0.05, 100.0),
              "tau_high": Param(1.0, "temperature of the high-frequency (|z_i - z_j|) KL", float, 0.05, 100.0)}

    def losses(self, logits: torch.Tensor, graph: GraphData) -> dict[str, torch.Tensor]:
        lam, t = self.hp["lam"], self.teacher_logits
        return {"ce": lam * self.ce(logits, graph),
                "lfd": (1 - lam) * lfd_loss(logits, t, graph.edge_index, self.hp["tau_low"]),
                "hfd": (1 - lam) * hfd_loss(logits, t, graph.edge_index, self.hp["tau_high"])}


def create_graph_method(name: str, teacher_logits: torch.Tensor | None = None, **params: Any) -> GraphMethod:
    """Registered graph method ``name`` with validated ``params``."""
    entry = GRAPH_METHODS.entry(name, "graph method")
    return entry.obj(teacher_logits, **GRAPH_METHODS.validate(name, params, f"graph method {name!r} params"))


# -------------------------------------------------------------------------------------------- trainer

@dataclass
class GraphTrainConfig:
    """Full-batch optimisation (Adam), the usual node-classification settings."""

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")


@dataclass
class GraphResult:
    """History (per epoch: loss terms, train/val acc), best epoch by validation accuracy, test accuracy and
    the model's eval-mode logits on every node at the best weights."""

    method: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    val_acc: float = 0.0
    test_acc: float = 0.0
    logits: torch.Tensor | None = None

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "best_epoch": self.best_epoch, "val/acc": self.val_acc,
                "test/acc": self.test_acc}


def _acc(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((logits[mask].argmax(1) == y[mask]).double().mean()) if mask.any() else float("nan")


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def node_logits(model: nn.Module, graph: GraphData) -> torch.Tensor:
    """Eval-mode logits of ``model`` on every node of ``graph``."""
    was = model.training
    model.eval()
    out = model(graph.x, graph)
    model.train(was)
    return out.detach()


def train_graph(method: str, model: nn.Module, graph: GraphData, teacher: nn.Module | torch.Tensor | None = None,
                config: GraphTrainConfig | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                **params: Any) -> GraphResult:
    """Train ``model`` (forward(x, graph)) on ``graph`` with graph method ``method``; ``teacher`` is a trained
    model (its logits are computed once) or its logits (N, C). The best validation epoch's weights are kept
    in ``model``."""
    cfg = config or GraphTrainConfig()
    graph = graph.to(cfg.device)
    t_logits = None
    if teacher is not None:
        t_logits = teacher if isinstance(teacher, torch.Tensor) else node_logits(teacher.to(cfg.device), graph)
        t_logits = t_logits.to(cfg.device).float()
        if t_logits.shape[0] != graph.num_nodes:
            raise ShapeError(f"teacher logits cover {t_logits.shape[0]} nodes, the graph has {graph.num_nodes}")
    obj = create_graph_method(method, t_logits, **params)
    _seed(cfg.seed)
    model = model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = GraphResult(method)
    best_state, best_val = None, -1.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        logits = model(graph.x, graph)
        if logits.shape != (graph.num_nodes, graph.num_classes):
            raise ShapeError(f"model returned {tuple(logits.shape)}, expected ({graph.num_nodes}, "
                             f"{graph.num_classes})")
        terms = obj.losses(logits, graph)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise ConfigError(f"{method}: the loss became {loss.item()} at epoch {epoch}; lower lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        ev = node_logits(model, graph)
        row = {"epoch": epoch, "train/loss": loss.item(), **{f"train/{k}": v.item() for k, v in terms.items()},
               "train/acc": _acc(ev, graph.y, graph.train_mask), "val/acc": _acc(ev, graph.y, graph.val_mask)}
        result.history.append(row)
        if row["val/acc"] > best_val:
            best_val, result.best_epoch = row["val/acc"], epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, row)
    if best_state is not None:
        model.load_state_dict(best_state)
    result.logits = node_logits(model, graph).cpu()
    result.val_acc = _acc(result.logits, graph.y.cpu(), graph.val_mask.cpu())
    result.test_acc = _acc(result.logits, graph.y.cpu(), graph.test_mask.cpu())
    return result


def list_graph_methods() -> list[str]:
    return GRAPH_METHODS.names()
