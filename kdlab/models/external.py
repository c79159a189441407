"""Passthrough to other model zoos: ``create("timm:<name>", ...)`` and ``create("torchvision:<name>", ...)``.

timm (Wightman, "PyTorch Image Models", 2019) and torchvision are optional: a name with their prefix builds
their model, untrained (pretrained weights would be a download), for ``num_classes`` outputs and
``in_shape[0]`` input channels; other params go to their constructor. When the package is missing the
error says which one to install.

Taps: "logits" is the classifier (timm's ``get_classifier()``, torchvision's last ``nn.Linear``); "stages"
come from timm's ``feature_info`` or torchvision's ``layer1..layer4`` / ``encoder.layers`` / a short
``features`` sequence, and are left out when none can be found. No "embedding" is declared.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from kdlab.errors import ConfigError, brief, shorten, unknown

#: prefix -> the pip package that provides it.
PACKAGES: dict[str, str] = {"timm": "timm", "torchvision": "torchvision"}
_LEAVES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Identity)


class MissingPackageError(ConfigError, ImportError):
    """A model needs an optional package that is not installed; the message says what to install."""


def _import(package: str, name: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingPackageError(f"model {name!r} needs the optional package {package!r}, which is not "
                                  f"installed: pip install {package}") from e


def available(prefix: str) -> bool:
    """Whether the package behind ``prefix`` ("timm", "torchvision") can be imported."""
    try:
        _import(PACKAGES[prefix], prefix)
    except (MissingPackageError, KeyError):
        return False
    return True


def _path_of(model: nn.Module, target: nn.Module) -> str | None:
    return next((p for p, m in model.named_modules() if m is target and p), None)


def adapt_channels(model: nn.Module, channels: int) -> nn.Module:
    """Replace the first ``nn.Conv2d`` by one reading ``channels`` input channels (same other settings)."""
    found = next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None or found[1].in_channels == channels:
        return model
    path, conv = found
    if conv.groups != 1:
        raise ConfigError(f"in_shape: cannot adapt the grouped first conv {path!r} of {type(model).__name__} "
                          f"from {conv.in_channels} to {channels} channels")
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, new)
    return model


def _existing(model: nn.Module, paths: list[str]) -> list[str]:
    names = {p for p, _ in model.named_modules() if p}
    return [p for p in paths if p in names]


def discover_stages(model: nn.Module) -> list[str]:
    """Stage paths of a third-party model, from the usual layouts; [] when none is recognised."""
    info = getattr(model, "feature_info", None)
    if info is not None:  # timm: a list of dicts (or a FeatureInfo) with a "module" path per stage
        entries = info.info if hasattr(info, "info") else info
        try:
            found = _existing(model, [str(e["module"]) for e in entries])
        except (TypeError, KeyError):
            found = []
        if found:
            return found
    layers = _existing(model, [f"layer{i}" for i in range(1, 5)])
    if layers:  # torchvision ResNet / ResNeXt / Wide ResNet
        return layers
    encoder_layers = getattr(getattr(model, "encoder", None), "layers", None)
    if isinstance(encoder_layers, nn.Sequential):  # torchvision ViT
        return [f"encoder.layers.{n}" for n, _ in encoder_layers.named_children()]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and 0 < len(features) <= 12 \
            and not any(isinstance(m, _LEAVES) for m in features.children()):  # EfficientNet, ConvNeXt, ...
        return [f"features.{n}" for n, _ in features.named_children()]
    return []


def _set_taps(model: nn.Module, logits: nn.Module | None) -> nn.Module:
    taps: dict[str, Any] = {}
    stages = discover_stages(model)
    if stages:
        taps["stages"] = stages
    path = _path_of(model, logits) if logits is not None else None
    if path:
        taps["logits"] = path
    model.kdlab_taps = taps
    return model


def _construct(name: str, build: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    try:
        return build(**kwargs)
    except TypeError as e:  # an unknown keyword of the third-party constructor
        raise ConfigError(f"model {name!r} params: {e}") from e


def _timm(name: str, inner: str, num_classes: int, in_shape: tuple[int, int, int],
          params: dict[str, Any]) -> nn.Module:
    timm = _import("timm", name)
    params.setdefault("pretrained", False)
    model = _construct(name, lambda **kw: timm.create_model(inner, **kw), num_classes=num_classes,
                       in_chans=in_shape[0], **params)
    return _set_taps(model, model.get_classifier() if hasattr(model, "get_classifier") else None)


def _torchvision(name: str, inner: str, num_classes: int, in_shape: tuple[int, int, int],
                 params: dict[str, Any]) -> nn.Module:
    torchvision = _import("torchvision", name)
    params.setdefault("weights", None)
    model = _construct(name, lambda **kw: torchvision.models.get_model(inner, **kw), num_classes=num_classes,
                       **params)
    adapt_channels(model, in_shape[0])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return _set_taps(model, linears[-1] if linears else None)


def _timm_names(name: str) -> list[str]:
    return _import("timm", name).list_models()


def _torchvision_names(name: str) -> list[str]:
    models = _import("torchvision", name).models
    try:  # the classification models only (not detection / segmentation / video)
        return models.list_models(module=models)
    except TypeError:
        return models.list_models()


BUILDERS: dict[str, Callable[..., nn.Module]] = {"timm": _timm, "torchvision": _torchvision}
NAMES: dict[str, Callable[[str], list[str]]] = {"timm": _timm_names, "torchvision": _torchvision_names}
#: passthrough parameters are plain settings: scalars or short lists of them, strings of bounded length
_PLAIN = (bool, int, float, str, type(None))


def check_external(name: str, params: Mapping[str, Any] | None = None, where: str = "model") -> dict[str, Any]:
    """Validate ``"<prefix>:<model>"`` and its constructor ``params`` before anything is built: the prefix, the
    model name (its package must be installed), and params that are plain values (numbers, strings, booleans,
    short lists of them) under identifier keys. Returns the params; raises ConfigError naming the field
    (``name``, ``params.<key>``, under ``where`` when given)."""
    pre = f"{where}." if where else ""
    prefix, _, inner = name.partition(":")
    if prefix not in BUILDERS:
        raise unknown("model prefix", prefix, list(BUILDERS), where=f"{pre}name")
    if not inner:
        raise ConfigError.at(f"{pre}name", f"{brief(name)} names no {prefix} model after the prefix "
                             f"(e.g. '{prefix}:resnet18')")
    params = dict(params or {})
    for key, value in params.items():
        at = f"{pre}params.{shorten(str(key), 60)}"
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError.at(at, "a constructor keyword must be a Python identifier")
        items = value if isinstance(value, list) else [value]
        if len(items) > 64 or not all(isinstance(v, _PLAIN) for v in items):
            raise ConfigError.at(at, f"{brief(value, 80)} is not a plain setting; a passthrough parameter is a "
                                 "number, string, boolean or null, or a list of at most 64 of them")
        if any(isinstance(v, float) and not math.isfinite(v) or isinstance(v, str) and len(v) > 200
               for v in items):
            raise ConfigError.at(at, f"{brief(value, 80)}: numbers must be finite, strings at most 200 characters")
    if prefix not in NAMES:  # a prefix another package added (e.g. ``zoo:``) checks its names when built
        return params
    try:
        names = NAMES[prefix](name)
    except MissingPackageError as e:
        raise MissingPackageError.at(f"{pre}name", str(e)) from None
    if inner not in names:
        raise unknown(f"{prefix} model", inner, names, where=f"{pre}name")
    return params


def create_external(name: str, num_classes: int, in_shape: tuple[int, int, int],
                    params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build ``"<prefix>:<model>"`` from timm or torchvision (see the module docstring)."""
    params = check_external(name, params)
    return BUILDERS[name.partition(":")[0]](name, name.partition(":")[2], num_classes, tuple(in_shape), params)


def table_rows() -> list[dict[str, Any]]:
    """Rows for ``list_models()``: one per passthrough prefix, saying whether its package is installed."""
    return [{"name": f"{p}:<name>", "family": "external",
             "doc": f"any {p} model by name ({'installed' if available(p) else f'needs: pip install {pkg}'})",
             "params": f"keyword arguments of the {p} constructor"} for p, pkg in PACKAGES.items()]
