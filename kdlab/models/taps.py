"""Feature taps: capture named submodule outputs of any ``nn.Module`` without editing ``forward``, and the
tap paths a zoo model declares (``declared_layers``, ``chosen_layers``)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from kdlab.errors import ConfigError, ShapeError, unknown


def resolve(model: nn.Module, paths: Iterable[str]) -> dict[str, nn.Module]:
    """Map each path of ``named_modules()`` to its module; an unknown path lists the closest real ones."""
    modules = dict(model.named_modules())
    out = {}
    for p in paths:
        if p not in modules or p == "":
            raise unknown("tap path", p, [n for n in modules if n], where=type(model).__name__)
        out[p] = modules[p]
    return out


def declared_layers(model: nn.Module, kind: str = "stages") -> list[str]:
    """The tap paths a zoo model declares (``kdlab_taps``), e.g. its stages or its embedding layer."""
    taps = getattr(model, "kdlab_taps", None)
    if not taps or kind not in taps:
        raise ConfigError(f"{type(model).__name__} declares no {kind!r} taps: pass teacher_layers/"
                          "student_layers with paths from model.named_modules()")
    value = taps[kind]
    return [value] if isinstance(value, str) else list(value)


def chosen_layers(model: nn.Module, layers: Sequence[str] | None, kind: str = "stages") -> list[str]:
    """``layers`` when given, else the ``kind`` taps that ``model`` declares."""
    return list(layers) if layers else declared_layers(model, kind)


def _first_tensor(output: object) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"tapped module returned {type(output).__name__}, not a tensor")


class FeatureTaps:
    """Context manager recording the outputs of ``paths`` of ``model`` on each forward.

    ``clone=True`` copies each output so later in-place ops (``ReLU(inplace=True)``) cannot alter it;
    ``detach=True`` drops the graph (for analysis under ``no_grad``); ``transform`` replaces the copy with a
    function of the output that records something new (e.g. pooled, centred features, or what CKA keeps of them).
    Hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], clone: bool = True, detach: bool = False,
                 transform: Callable[[torch.Tensor], Any] | None = None):
        self.model, self.paths = model, list(paths)
        self.clone, self.detach, self.transform = clone, detach, transform
        self._modules = resolve(model, self.paths)
        self._handles: list = []
        self.features: dict[str, torch.Tensor] = {}

    def _hook(self, path: str):
        def record(_module: nn.Module, _inp: object, output: object) -> None:
            t = _first_tensor(output)
            if self.detach:
                t = t.detach()
            self.features[path] = self.transform(t) if self.transform else t.clone() if self.clone else t
        return record

    def __enter__(self) -> FeatureTaps:
        self._handles = [m.register_forward_hook(self._hook(p)) for p, m in self._modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __getitem__(self, path: str) -> torch.Tensor:
        return self.features[path]

    def pop(self) -> dict[str, torch.Tensor]:
        """The features of the last forward, in ``paths`` order, and forget them."""
        feats = {p: self.features[p] for p in self.paths}
        self.features = {}
        return feats


@torch.no_grad()
def feature_shapes(model: nn.Module, paths: Sequence[str], in_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each path, from one dummy forward (batch of 2, eval mode kept)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    x = torch.zeros(2, *in_shape, device=p.device if p is not None else "cpu")
    try:
        with FeatureTaps(model, paths, clone=False, detach=True) as taps:
            model(x)
            return {k: tuple(v.shape[1:]) for k, v in taps.pop().items()}
    finally:
        model.train(was_training)


@torch.no_grad()
def num_logits(model: nn.Module, in_shape: Sequence[int]) -> int:
    """How many logits ``model`` gives per input of ``in_shape`` (one dummy batch of 2, eval mode kept); a model
    that cannot take such inputs or does not return (batch, classes) logits is a ShapeError."""
    was = model.training
    model.eval()
    p = next(model.parameters(), None)
    try:
        out = model(torch.zeros(2, *in_shape, device=p.device if p is not None else "cpu"))
    except RuntimeError as e:
        raise ShapeError(f"{type(model).__name__} cannot take inputs of shape {tuple(in_shape)}: {e}") from e
    finally:
        model.train(was)
    if out.ndim != 2:
        raise ShapeError(f"{type(model).__name__} must return (batch, classes) logits, got {tuple(out.shape)}")
    return int(out.shape[1])
