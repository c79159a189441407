"""Figures of Mirage (Gupta et al., ICLR 2024): the distilled computation trees of each class drawn as layered
trees (root on top), and test accuracy of GNNs trained on the full training graphs vs on the distilled set."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.theme import BASELINE, LEGEND_RIGHT, STUDENT, apply_theme, axis_ref, grid_layout, plotly_text, sequence

TREE_PX = 230  # height of one row of trees
EDGE_COLOR = "#BBBBBB"


def tree_layout(parent: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of each node of a rooted tree given by ``parent`` (-1 at the root): depth d at y = -d, leaves one
    apart from left to right in depth-first order, every parent centred over its first and last child."""
    parent = np.asarray(parent, dtype=np.int64)
    children: list[list[int]] = [[] for _ in parent]
    roots = [i for i, p in enumerate(parent.tolist()) if p < 0]
    if len(roots) != 1:
        raise ConfigError(f"parent: a tree has exactly one root (parent -1), got {len(roots)}")
    for i, p in enumerate(parent.tolist()):
        if p >= 0:
            children[p].append(i)
    x, y = np.zeros(len(parent)), np.zeros(len(parent))
    next_leaf = 0.0
    stack = [(roots[0], 0, False)]
    while stack:  # iterative post-order: children placed before their parent
        node, depth, done = stack.pop()
        y[node] = -depth
        if not children[node]:
            x[node], next_leaf = next_leaf, next_leaf + 1.0
        elif done:
            x[node] = (x[children[node][0]] + x[children[node][-1]]) / 2
        else:
            stack.append((node, depth, True))
            stack += [(c, depth + 1, False) for c in reversed(children[node])]
    return x, y


def _feature_ids(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    ids = {r.tobytes(): i for i, r in enumerate(np.asarray(table, dtype=np.float32))}
    return np.array([ids.get(r.tobytes(), -1) for r in np.asarray(rows, dtype=np.float32)], dtype=np.int64)


def _feature_name(row: np.ndarray, names: Sequence[str] | None) -> str:
    one_hot = np.count_nonzero(row) == 1 and float(row.max()) == 1.0
    if one_hot:
        k = int(row.argmax())
        return str(names[k]) if names is not None and k < len(names) else f"feature {k}"
    return "[" + ", ".join(f"{v:g}" for v in row.tolist()) + "]"


def computation_trees(mirage_set: Any, per_class: int = 3, cols: int | None = None,
                      feature_names: Sequence[str] | None = None,
                      title: str = "distilled computation trees per class") -> go.Figure:
    """The ``per_class`` most frequent trees of each class's tree-sets, one panel per tree titled with its class
    and frequency (training graphs of the class containing it); nodes coloured by their feature (one-hot index,
    named by ``feature_names``, by default the graph set's: atom types, degree buckets), hover shows feature and
    depth."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError(f"per_class: expected a positive integer, got {per_class!r}")
    k = len(mirage_set.classes)
    graphs = mirage_set.meta.get("graphs_per_class", [0] * k)
    picks: list[tuple[int, int]] = []  # (class, tree)
    starts = np.concatenate([[0], np.cumsum(mirage_set.set_sizes)])
    for c in range(k):
        used = {int(t) for s in np.flatnonzero(mirage_set.set_class == c)
                for t in mirage_set.set_trees[starts[s]:starts[s + 1]]}
        ranked = sorted(used, key=lambda t, c=c: (-int(mirage_set.tree_support[t, c]), t))
        picks += [(c, t) for t in ranked[:per_class]]
    if not picks:
        raise ConfigError("mirage_set: has no tree-sets to draw; distill with a lower threshold")
    table = mirage_set.feature_table
    feature_names = feature_names or mirage_set.meta.get("feature_names") or None
    palette = sequence(max(len(table), 1))
    cols = max(1, min(cols or per_class, len(picks)))
    rows = math.ceil(len(picks) / cols)
    titles = [f"{plotly_text(mirage_set.classes[c])} · in {int(mirage_set.tree_support[t, c])}"
              + (f"/{graphs[c]}" if c < len(graphs) and graphs[c] else "") + " graphs" for c, t in picks]
    layout = grid_layout(rows, cols, titles, h_space=0.04, v_space=min(0.12, 0.3 / rows) if rows > 1 else 0.0)
    traces: list[dict[str, Any]] = []
    shown: set[int] = set()
    for panel, (c, t) in enumerate(picks, start=1):
        x_feat, edges = mirage_set.tree(t)
        parent = np.full(len(x_feat), -1, dtype=np.int64)
        parent[edges[0].numpy()] = edges[1].numpy()
        px, py = tree_layout(parent)
        axes = dict(xaxis=axis_ref(panel, "x"), yaxis=axis_ref(panel, "y"))
        ex, ey = [], []
        for child, par in zip(edges[0].tolist(), edges[1].tolist(), strict=True):
            ex += [px[child], px[par], None]
            ey += [py[child], py[par], None]
        traces.append(dict(type="scatter", x=ex, y=ey, mode="lines", line=dict(color=EDGE_COLOR, width=1),
                           hoverinfo="skip", showlegend=False, **axes))
        ids = _feature_ids(x_feat.numpy(), table)
        for f in np.unique(ids).tolist():
            sel = np.flatnonzero(ids == f)
            name = plotly_text(_feature_name(table[f] if f >= 0 else x_feat[sel[0]].numpy(), feature_names))
            traces.append(dict(type="scatter", x=px[sel].tolist(), y=py[sel].tolist(), mode="markers",
                               marker=dict(size=9 if len(parent) < 40 else 6, color=palette[f % len(palette)],
                                           line=dict(color="#FFFFFF", width=1)),
                               name=name, legendgroup=f"f{f}", showlegend=f not in shown,
                               text=[f"{name}<br>depth {int(-py[i])}" + (" (root)" if i == 0 else "") for i in sel],
                               hovertemplate="%{text}<extra></extra>", meta={"class": mirage_set.classes[c],
                                                                             "tree": t}, **axes))
            shown.add(f)
        layout[axis_ref(panel, "xaxis")].update(visible=False)
        layout[axis_ref(panel, "yaxis")].update(visible=False)
    layout.update(LEGEND_RIGHT)
    return apply_theme(go.Figure(data=traces, layout=layout), plotly_text(title), height=100 + rows * TREE_PX)


def mirage_accuracy(table: Any, title: str = "test accuracy: trained on full data vs on the Mirage set"
                    ) -> go.Figure:
    """Bars of test accuracy per model, full training graphs (grey) vs the distilled set (orange); several rows
    per model and data (seeds) give mean ± std. ``table`` has columns model, data ("full" / "mirage"),
    test_acc (a fraction), as ``kdlab.condense.mirage.evaluate_mirage`` returns."""
    missing = [c for c in ("model", "data", "test_acc") if c not in getattr(table, "columns", [])]
    if missing:
        raise ConfigError(f"table: missing columns {missing}; expected model, data, test_acc (evaluate_mirage)")
    models = list(dict.fromkeys(table["model"]))
    traces = []
    for data, color, label in (("full", BASELINE, "full training set"), ("mirage", STUDENT, "Mirage set")):
        part = table[table["data"] == data]
        groups = [np.asarray(part.loc[part["model"] == m, "test_acc"], dtype=float) for m in models]
        means = [100 * g.mean() if len(g) else None for g in groups]
        stds = [100 * g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]
        traces.append(go.Bar(x=[plotly_text(m) for m in models], y=means, name=label, marker_color=color,
                             error_y=dict(type="data", array=stds, visible=any(len(g) > 1 for g in groups)),
                             customdata=[len(g) for g in groups],
                             hovertemplate=f"{label}: %{{y:.1f}}% (%{{customdata}} runs)<extra></extra>"))
    fig = go.Figure(traces)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100])
    return apply_theme(fig, plotly_text(title), height=340)
