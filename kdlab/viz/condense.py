"""Figures of dataset distillation: per-class grids, the snapshot scrubber, nearest real neighbours, class
means vs synthetic images, the distillation loss. Images come in as arrays (N, C, H, W) (numpy or torch),
1 or 3 channels, shown clipped to [0, 1]."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdlab.errors import ShapeError
from kdlab.viz.theme import STUDENT, apply_theme, plotly_text


def _images(x: Any) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ShapeError(f"images: expected (N, C, H, W) with 1 or 3 channels, got {a.shape}")
    return a


def tile(images: Any, rows: int, cols: int, pad: int = 1, slots: Sequence[tuple[int, int]] | None = None,
         scale: int = 1) -> np.ndarray:
    """Images (N, C, H, W) laid out in a ``rows`` x ``cols`` RGB uint8 canvas (white gaps of ``pad``);
    image ``i`` goes to ``slots[i]`` = (row, col), by default row-major."""
    a = _images(images)
    n, c, h, w = a.shape
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for i in range(n):
        r, q = slots[i] if slots is not None else divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y0:y0 + h, x0:x0 + w] = np.clip(a[i], 0, 1).transpose(1, 2, 0)  # 1 channel broadcasts to RGB
    out = (canvas * 255 + 0.5).astype(np.uint8)
    return out.repeat(scale, 0).repeat(scale, 1) if scale > 1 else out


def _class_slots(labels: np.ndarray, n_classes: int) -> tuple[list[tuple[int, int]], int]:
    seen = [0] * n_classes
    slots = []
    for y in labels:
        slots.append((int(y), seen[int(y)]))
        seen[int(y)] += 1
    return slots, max(seen + [1])


def _image_figure(canvas: np.ndarray, title: str, rows: list[str], row_px: int, pad: int, scale: int,
                  cols: list[str] | None = None, col_px: int = 0) -> go.Figure:
    fig = go.Figure(go.Image(z=canvas, hoverinfo="skip"))
    centres = [(pad + i * (row_px + pad) + row_px / 2) * scale for i in range(len(rows))]
    fig.update_yaxes(tickvals=centres, ticktext=[plotly_text(r) for r in rows], showgrid=False, zeroline=False)
    if cols:
        centres_x = [(pad + i * (col_px + pad) + col_px / 2) * scale for i in range(len(cols))]
        # column labels under the images: plotly.js slants them in a narrow figure, and above the images they
        # would then reach the title
        fig.update_xaxes(tickvals=centres_x, ticktext=[plotly_text(c) for c in cols], showgrid=False, side="bottom",
                         automargin=True)
    else:
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    height = max(220, min(900, canvas.shape[0] * 2 + 120))
    return apply_theme(fig, title, height=height, margin=dict(l=70, r=20, t=50, b=40 if cols else 20))


def class_grid(images: Any, labels: Any, classes: Sequence[str], title: str = "synthetic images per class",
               flips: bool = False, scale: int = 2) -> go.Figure:
    """One row per class, one column per synthetic image; ``flips`` adds each image's horizontal flip
    beside it (what FYI matches)."""
    a, y = _images(images), np.asarray(labels).astype(int)
    if flips:
        a = np.stack([a, a[..., ::-1]], 1).reshape(-1, *a.shape[1:])
        y = y.repeat(2)
    slots, cols = _class_slots(y, len(classes))
    canvas = tile(a, len(classes), cols, 1, slots, scale)
    cols_names = (["image", "flip"] * (cols // 2)) if flips else None
    return _image_figure(canvas, title, list(classes), a.shape[2], 1, scale, cols_names, a.shape[3])


def method_comparison(sets: Mapping[str, tuple[Any, Any]], classes: Sequence[str], per_class: int = 4,
                      title: str = "per class, methods side by side", scale: int = 2) -> go.Figure:
    """One row per class; for every method (``{name: (images, labels)}``, same image shape) a block of its first
    ``per_class`` images of that class, blocks in the given order with a blank column between them."""
    if not sets:
        raise ShapeError("sets: need at least one method's (images, labels)")
    arrays = {name: (_images(x), np.asarray(y).astype(int)) for name, (x, y) in sets.items()}
    shapes = {a.shape[1:] for a, _ in arrays.values()}
    if len(shapes) > 1:
        raise ShapeError(f"sets: the methods' images differ in shape: {sorted(shapes)}")
    width = {name: max(1, min(per_class, int(np.bincount(y, minlength=len(classes)).max())))
             for name, (_, y) in arrays.items()}
    imgs, slots, starts, col = [], [], [], 0
    for name, (a, y) in arrays.items():
        starts.append(col)
        for k in range(len(classes)):
            for j, im in enumerate(a[y == k][:width[name]]):
                imgs.append(im)
                slots.append((k, col + j))
        col += width[name] + 1
    canvas = tile(np.stack(imgs), len(classes), col - 1, 1, slots, scale)
    h, w = next(iter(arrays.values()))[0].shape[2:]
    fig = _image_figure(canvas, title, list(classes), h, 1, scale)
    centres = [(1 + (s + width[n] / 2) * (w + 1)) * scale for s, n in zip(starts, arrays, strict=True)]
    fig.update_xaxes(showticklabels=True, tickvals=centres, ticktext=[plotly_text(n) for n in arrays], side="bottom",
                     automargin=True)
    fig.update_layout(margin=dict(b=40))
    return fig


def snapshot_scrubber(snapshots: Sequence[tuple[int, Any, Any]], classes: Sequence[str],
                      title: str = "synthetic images during distillation", scale: int = 2) -> go.Figure:
    """Per-class grids of ``(iteration, images, labels)`` snapshots with a slider over iterations."""
    if not snapshots:
        raise ShapeError("snapshots: need at least one (iteration, images, labels)")
    canvases, iters = [], []
    for it, imgs, labels in snapshots:
        slots, cols = _class_slots(np.asarray(labels).astype(int), len(classes))
        canvases.append(tile(imgs, len(classes), cols, 1, slots, scale))
        iters.append(int(it))
    h = _images(snapshots[0][1]).shape[2]
    fig = _image_figure(canvases[-1], title, list(classes), h, 1, scale)
    fig.frames = [go.Frame(data=[go.Image(z=c, hoverinfo="skip")], name=str(it)) for it, c in zip(iters, canvases,
                                                                                                  strict=True)]
    steps = [dict(method="animate", label=str(it), args=[[str(it)], dict(mode="immediate", frame=dict(duration=0,
                  redraw=True), transition=dict(duration=0))]) for it in iters]
    fig.update_layout(sliders=[dict(active=len(iters) - 1, steps=steps, currentvalue=dict(prefix="iteration "),
                                    pad=dict(t=20))])
    return fig


def neighbours_figure(synthetic: Any, real: Any, index: Any, distances: Any | None = None,
                      rows: Sequence[str] | None = None, space: str = "pixel",
                      title: str | None = None, scale: int = 2) -> go.Figure:
    """Each synthetic image (first column) followed by its nearest real images (``index`` (S, k) into
    ``real``); the row label shows the distance to the nearest one."""
    s, r = _images(synthetic), _images(real)
    idx = np.asarray(index).astype(int)
    k = idx.shape[1]
    imgs = np.concatenate([np.concatenate([s[i:i + 1], r[idx[i]]]) for i in range(len(s))])
    canvas = tile(imgs, len(s), k + 1, 1, None, scale)
    names = list(rows) if rows is not None else [f"#{i}" for i in range(len(s))]
    if distances is not None:
        d = np.asarray(distances, dtype=float)
        names = [f"{n} (d1={d[i, 0]:.3g})" for i, n in enumerate(names)]
    cols = ["synthetic"] + [f"real #{j + 1}" for j in range(k)]
    return _image_figure(canvas, title or f"nearest real neighbours ({space} space)", names, s.shape[2], 1, scale,
                         cols, s.shape[3])


def mean_vs_synthetic(real: Any, real_labels: Any, synthetic: Any, synthetic_labels: Any, classes: Sequence[str],
                      title: str = "class mean of the real images vs synthetic images", scale: int = 2) -> go.Figure:
    """One row per class: the mean real image, the mean synthetic image, then the synthetic images."""
    r, yr = _images(real), np.asarray(real_labels).astype(int)
    s, ys = _images(synthetic), np.asarray(synthetic_labels).astype(int)
    per = max(int(np.bincount(ys, minlength=len(classes)).max()), 1)
    imgs, slots = [], []
    for k in range(len(classes)):
        imgs += [r[yr == k].mean(0) if (yr == k).any() else np.zeros_like(r[0]),
                 s[ys == k].mean(0) if (ys == k).any() else np.zeros_like(s[0])]
        slots += [(k, 0), (k, 1)]
        for j, im in enumerate(s[ys == k]):
            imgs.append(im)
            slots.append((k, 2 + j))
    canvas = tile(np.stack(imgs), len(classes), per + 2, 1, slots, scale)
    cols = ["real mean", "synthetic mean"] + [f"synthetic {j + 1}" for j in range(per)]
    return _image_figure(canvas, title, list(classes), r.shape[2], 1, scale, cols, r.shape[3])


def loss_curve(iterations: Any, loss: Any, title: str = "distillation loss", name: str = "loss") -> go.Figure:
    """The matching loss per iteration (log scale)."""
    fig = go.Figure(go.Scatter(x=np.asarray(iterations), y=np.asarray(loss, dtype=float), mode="lines",
                               name=plotly_text(name), line=dict(color=STUDENT)))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="loss", type="log")
    return apply_theme(fig, title, height=320)


def accuracy_bars(table: Any, title: str = "test accuracy of networks trained on the synthetic set") -> go.Figure:
    """Mean +- std accuracy per evaluation model (a ``kdlab.condense.summarize`` table: index model,
    columns mean, std)."""
    fig = go.Figure(go.Bar(x=[plotly_text(m) for m in table.index], y=100 * np.asarray(table["mean"], float),
                           error_y=dict(type="data", array=100 * np.asarray(table["std"], float)),
                           marker_color=STUDENT))
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100])
    return apply_theme(fig, title, height=320)
