"""Domain shifts as composable, seeded transforms of a whole ``ArrayDataset`` (vectorised torch ops).

Each shift takes a ``severity`` in [0, 1] whose meaning it declares (``list_shifts()``). Image shifts keep
values in [0, 1]; label shifts (``subset``, ``relabel``) build new tasks from the same images. Per-image
randomness comes from ``rng`` (differs per split); per-class choices (colours, permutations) come from
``seed`` alone, so train, val and test share them.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.registry import Param, Registry

SHIFTS = Registry("shift")

ShiftFn = Callable[..., ArrayDataset]


@dataclass(frozen=True)
class Shift:
    """One step of a shift pipeline: a registered shift name, its severity and extra parameters."""

    name: str
    severity: float = 0.5
    params: Mapping[str, Any] = field(default_factory=dict)


ShiftLike = str | Shift | tuple | Mapping[str, Any]


def register_shift(name: str, severity: str, kind: str = "image",
                   params: Mapping[str, Param] | None = None) -> Callable[[ShiftFn], ShiftFn]:
    """Decorator registering ``fn(data, severity, rng, seed, **params) -> ArrayDataset`` as shift ``name``.

    ``severity`` is the one-line meaning of severity (e.g. "angle = severity * 90 degrees").
    """
    declared = {"severity": Param(0.5, severity, float, 0.0, 1.0), **dict(params or {})}
    return SHIFTS.register(name, params=declared, kind=kind)


def list_shifts() -> pd.DataFrame:
    """One row per shift: name, kind (image/label), what it does, what severity means, other params."""
    rows = []
    for name in SHIFTS.names():
        e = SHIFTS.entry(name)
        rows.append({"name": name, "kind": e.tags.get("kind", "image"), "doc": e.doc,
                     "severity": e.params["severity"].doc,
                     "params": ", ".join(k for k in e.params if k != "severity")})
    return pd.DataFrame(rows, columns=["name", "kind", "doc", "severity", "params"])


def _replace(data: ArrayDataset, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
             classes: list[str] | None = None) -> ArrayDataset:
    return ArrayDataset(data.x if x is None else x, data.y if y is None else y, data.name,
                        list(data.classes if classes is None else classes), data.source)


# ----------------------------------------------------------------------------------------- image shifts

@register_shift("rotate", "angle = severity * 90 degrees counter-clockwise (per_image: uniform in +-angle)",
                params={"per_image": Param(False, "draw each image's angle uniformly in [-angle, +angle]",
                                           bool)})
def rotate(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int,
           per_image: bool = False) -> ArrayDataset:
    """Rotate images about their centre (bilinear, black corners)."""
    if severity == 0:
        return data
    n, _, h, w = data.x.shape
    top = math.radians(90.0 * severity)
    if per_image:
        angle = (torch.rand(n, generator=rng, dtype=torch.float64) * 2 - 1) * top
    else:
        angle = torch.full((n,), top, dtype=torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)  # output (u, v) -> input, in pixel-scaled coordinates
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta.float(), list(data.x.shape), align_corners=False)
    x = F.grid_sample(data.x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _replace(data, x.clamp_(0.0, 1.0))


@register_shift("invert", "fraction of images inverted (x -> 1 - x); 1 inverts all")
def invert(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int) -> ArrayDataset:
    """Photographic negative of a seeded fraction of the images."""
    if severity == 0:
        return data
    n = len(data)
    pick = torch.rand(n, generator=rng) < severity if severity < 1 else torch.ones(n, dtype=torch.bool)
    x = torch.where(pick[:, None, None, None], 1.0 - data.x, data.x)
    return _replace(data, x)


def _hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """Fully saturated, full-value colours (K, 3) for hues in [0, 1)."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


@register_shift("colorize", "colour strength: 0 gives grey RGB, 1 full colour",
                params={"per_class": Param(False, "one colour per class (a spurious cue) instead of per "
                                           "image", bool),
                        "mode": Param("tint", "tint: grey * colour (Colored-MNIST look); luma: add colour "
                                      "while keeping the channel mean equal to the grey image", str,
                                      choices=("tint", "luma"))})
def colorize(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int,
             per_class: bool = False, mode: str = "tint") -> ArrayDataset:
    """Turn images into 3-channel colour images with a random per-image or per-class hue."""
    grey = data.x.mean(dim=1, keepdim=True)
    n = len(data)
    if per_class:
        g = torch.Generator().manual_seed(seed)
        k = max(data.num_classes, 1)
        offset = torch.rand(1, generator=g, dtype=torch.float64)
        hues = (torch.randperm(k, generator=g).double() / k + offset) % 1
        colour = _hue_to_rgb(hues.float())[data.y]
    else:
        colour = _hue_to_rgb(torch.rand(n, generator=rng))
    colour = colour[:, :, None, None]  # (N, 3, 1, 1)
    if mode == "tint":
        x = grey * ((1.0 - severity) + severity * colour)
    else:
        d = colour - colour.mean(dim=1, keepdim=True)
        big = torch.full_like(grey.expand(-1, 3, -1, -1), float("inf"))
        up = torch.where(d > 0, (1.0 - grey) / d.clamp(min=1e-12), big)
        down = torch.where(d < 0, grey / (-d).clamp(min=1e-12), big)
        room = torch.minimum(up, down).amin(dim=1, keepdim=True).clamp(max=1.0)
        x = grey + severity * room * d
    return _replace(data, x.clamp_(0.0, 1.0))


@register_shift("noise", "standard deviation of additive Gaussian noise (values clipped to [0, 1])")
def noise(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int) -> ArrayDataset:
    """Additive Gaussian pixel noise."""
    if severity == 0:
        return data
    eps = torch.randn(data.x.shape, generator=rng)
    return _replace(data, (data.x + severity * eps).clamp_(0.0, 1.0))


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``x`` with the 2-D ``kernel`` (replicate padding keeps the size)."""
    c = x.shape[1]
    kh, kw = kernel.shape
    x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    return F.conv2d(x, kernel.to(x.dtype).expand(c, 1, kh, kw), groups=c)


@register_shift("blur", "Gaussian sigma = severity * 10% of the image side (2.8 px at 28 px)")
def blur(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int) -> ArrayDataset:
    """Gaussian blur (separable kernel, replicate padding: mean brightness is kept)."""
    sigma = severity * 0.1 * min(data.x.shape[-2:])
    if sigma < 1e-3:
        return data
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).float()
    x = _depthwise(_depthwise(data.x, k[None, :]), k[:, None])
    return _replace(data, x.clamp_(0.0, 1.0))


@register_shift("edge", "blend towards the Sobel edge magnitude: 0 original, 1 edges only")
def edge(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int) -> ArrayDataset:
    """Sobel gradient magnitude (per channel, scaled so each image's strongest edge is 1)."""
    if severity == 0:
        return data
    sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx, gy = _depthwise(data.x, sx), _depthwise(data.x, sx.T)
    mag = torch.sqrt(gx * gx + gy * gy)
    mag = mag / mag.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
    return _replace(data, ((1.0 - severity) * data.x + severity * mag).clamp_(0.0, 1.0))


@register_shift("zoom", "content scaled about the centre by 1 - 0.5 * severity (1: half size, black border)")
def zoom(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int) -> ArrayDataset:
    """Shrink every image's content towards its centre: the same objects at a smaller size in the frame."""
    if severity == 0:
        return data
    n = len(data)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / (1.0 - 0.5 * severity)  # output -> input: sample further out
    grid = F.affine_grid(theta, list(data.x.shape), align_corners=False)
    x = F.grid_sample(data.x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _replace(data, x.clamp_(0.0, 1.0))


# ----------------------------------------------------------------------------------------- label shifts

def _class_list(value: Any, k: int, where: str) -> list[int]:
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < k for c in value):
        raise ConfigError(f"{where}: entries must be class indices in 0..{k - 1}, got {list(value)!r}")
    return list(value)


@register_shift("subset", "drop classes: keeps round(K - severity * (K - 2)) of K classes (0 keeps all)",
                kind="label", params={"classes": Param(None, "class indices to keep, in their new order "
                                                       "(overrides severity)", list)})
def subset(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int,
           classes: list[int] | None = None) -> ArrayDataset:
    """Keep some classes and renumber them 0..k-1 (a smaller task on the same images)."""
    k = data.num_classes
    if classes is None:
        keep = list(range(max(1, round(k - severity * (k - 2))) if k > 2 else k))
    else:
        keep = _class_list(classes, k, "shift.classes")
        if not keep or len(set(keep)) != len(keep):
            raise ConfigError(f"shift.classes: need distinct class indices in 0..{k - 1}, got {keep!r}")
    lut = torch.full((k,), -1, dtype=torch.int64)
    lut[torch.tensor(keep)] = torch.arange(len(keep))
    new = lut[data.y]
    rows = new >= 0
    return ArrayDataset(data.x[rows], new[rows], data.name, [data.classes[c] for c in keep], data.source)


@register_shift("relabel", "permute: fraction of classes whose labels are cycled; parity ignores it",
                kind="label", params={
                    "mode": Param("permute", "permute: seeded permutation; parity: even/odd classes; "
                                  "mapping: use `mapping`", str, choices=("permute", "parity", "mapping")),
                    "mapping": Param(None, "new label of each old class (mode='mapping')", list)})
def relabel(data: ArrayDataset, severity: float, rng: torch.Generator, seed: int,
            mode: str = "permute", mapping: list[int] | None = None) -> ArrayDataset:
    """Give the same images new labels: a seeded permutation, parity (even/odd) or an explicit map."""
    k = data.num_classes
    if mode == "parity":
        lut = torch.arange(k) % 2
        names = ["even", "odd"][: min(k, 2)]
    else:
        if mode == "mapping":
            if mapping is None or len(mapping) != k:
                raise ConfigError(f"shift.mapping: mode 'mapping' needs a list of {k} new labels (one per "
                                  f"class), got {mapping!r}")
            lut = torch.tensor(_class_list(mapping, k, "shift.mapping"), dtype=torch.int64)
        else:
            g = torch.Generator().manual_seed(seed)
            moved = torch.randperm(k, generator=g)[: round(severity * k)]
            lut = torch.arange(k)
            if len(moved) > 1:
                lut[moved] = moved.roll(1)  # a cycle: every chosen class gets another's label
        used = sorted(set(lut.tolist()))
        dense = torch.full((k,), -1, dtype=torch.int64)
        dense[torch.tensor(used)] = torch.arange(len(used))
        lut = dense[lut]
        names = ["+".join(data.classes[c] for c in range(k) if int(lut[c]) == j) for j in range(len(used))]
    return _replace(data, y=lut[data.y], classes=names)


# ----------------------------------------------------------------------------------------- composition

def as_steps(shift: ShiftLike | Sequence[ShiftLike], severity: float = 0.5) -> list[Shift]:
    """Normalise the accepted forms to validated ``Shift`` steps.

    Forms: ``"rotate"``, ``("rotate", 0.3)``, ``("colorize", 1.0, {"per_class": True})``,
    ``{"name": "noise", "severity": 0.2}``, ``Shift(...)``, or a list of any of these (applied in order).
    """
    single = isinstance(shift, (str, Shift, Mapping)) or (
        isinstance(shift, (tuple, list)) and 2 <= len(shift) <= 3 and isinstance(shift[0], str)
        and isinstance(shift[1], (int, float)) and not isinstance(shift[1], bool))
    items = [shift] if single else list(shift)  # type: ignore[arg-type]
    if not items:
        raise ConfigError(f"shift: give at least one shift; valid: {', '.join(SHIFTS.names())}")
    steps = []
    for i, item in enumerate(items):
        where = f"shift[{i}]" if not single else "shift"
        if isinstance(item, Shift):
            name, sev, params = item.name, item.severity, dict(item.params)
        elif isinstance(item, str):
            name, sev, params = item, severity, {}
        elif isinstance(item, Mapping):
            params = dict(item)
            if "name" not in params:
                raise ConfigError(f"{where}: a shift mapping needs a 'name'; valid: "
                                  f"{', '.join(SHIFTS.names())}")
            name, sev = params.pop("name"), params.pop("severity", severity)
        elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 3 and isinstance(item[0], str):
            name, sev = item[0], item[1] if len(item) > 1 else severity
            params = dict(item[2]) if len(item) > 2 else {}
        else:
            raise ConfigError(f"{where}: expected a name, (name, severity[, params]) or a mapping, "
                              f"got {item!r}")
        SHIFTS.entry(name, where=where)
        checked = SHIFTS.validate(name, {"severity": sev, **params}, where=where)
        sev = checked.pop("severity")
        steps.append(Shift(name, sev, checked))
    return steps


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def apply_shifts(data: ArrayDataset, shift: ShiftLike | Sequence[ShiftLike], severity: float = 0.5,
                 seed: int = 0, split: str = "train") -> ArrayDataset:
    """``data`` with the shifts applied in order; deterministic given ``seed`` and ``split``."""
    steps = as_steps(shift, severity)
    for i, step in enumerate(steps):
        fn = SHIFTS.get(step.name)
        rng = torch.Generator().manual_seed(_seed(seed, split, i, step.name))
        data = fn(data, step.severity, rng, _seed(seed, i, step.name), **step.params)
    desc = ", ".join(f"{s.name}({s.severity:g})" for s in steps)
    out = _replace(data)
    out.source = f"{data.source}; shifted: {desc}" if data.source else f"shifted: {desc}"
    return out
