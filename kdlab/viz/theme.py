"""The kdlab look: a plotly template registered as ``"kdlab"`` and one colour per role.

Roles are fixed across every figure of the lab: the teacher is always purple, the student orange and a
baseline (vanilla training, no distillation) grey; other runs take the qualitative ``SEQUENCE`` in order.
Importing this module registers the template; it does not change plotly's global default.
"""
from __future__ import annotations

import functools
import html
import json
from collections.abc import Iterable

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE_NAME = "kdlab"

TEACHER = "#7B3294"
STUDENT = "#E66101"
BASELINE = "#7F7F7F"
GAP = "#C0392B"
ROLE_COLORS: dict[str, str] = {"teacher": TEACHER, "student": STUDENT, "baseline": BASELINE}
ROLE_ALIASES: dict[str, str] = {"vanilla": "baseline", "baseline": "baseline", "no-kd": "baseline",
                                "no_kd": "baseline", "nokd": "baseline", "scratch": "baseline",
                                "teacher": "teacher", "student": "student"}
# qualitative colours for many runs; none of them is close to a role colour
SEQUENCE: tuple[str, ...] = ("#1B9E77", "#377EB8", "#E7298A", "#66A61E", "#E6AB02", "#17BECF", "#A6761D",
                             "#1F3B73", "#D62728", "#8C564B", "#4DAF4A", "#BCBD22")
SEQUENTIAL: list[list[float | str]] = [[0.0, "#F7FBFF"], [0.25, "#C6DBEF"], [0.5, "#6BAED6"],
                                       [0.75, "#2171B5"], [1.0, "#08306B"]]
DIVERGING: list[list[float | str]] = [[0.0, "#B2182B"], [0.5, "#F7F7F7"], [1.0, "#2166AC"]]
FONT = "Inter, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
TITLE_PAD = 12  # px above the title
TITLE_PX = 40  # px from the top of a figure to below its title (a 16 px title line and its padding)
MARGIN = {"t": 80, "b": 60}  # the template's top and bottom margins (px)
X_LABELS_PX = 52  # px under a plot's bottom edge taken by its x tick labels and x axis title
LEGEND_ROW_PX = 22  # px of one row of a horizontal legend


def _template() -> go.layout.Template:
    white = pio.templates["plotly_white"]
    # plotly_white's layout, and trace defaults only for the trace types the lab draws (a lean template
    # is copied into every figure: it keeps figures quick to build and reports small)
    t = go.layout.Template(layout=white.layout)
    for kind in ("scatter", "bar", "heatmap", "histogram"):
        t.data[kind] = white.data[kind]
    t.layout.update(
        colorway=list(SEQUENCE),
        font=dict(family=FONT, size=13, color="#222222"),
        # the title pinned to the top left of the figure (TITLE_PX tall): a legend or subplot titles under it
        # never reach it while they stay below TITLE_PX
        title=dict(x=0.0, xanchor="left", xref="container", y=1.0, yanchor="top", yref="container",
                   pad=dict(t=TITLE_PAD, l=10), font=dict(size=16)),
        # room for the usual tick labels, axis titles and a one-row legend: when they do not fit, plotly.js
        # grows the margins and draws the whole figure a second time (twice as slow in the browser)
        margin=dict(l=70, r=30, t=MARGIN["t"], b=MARGIN["b"]),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0.0),
        hoverlabel=dict(namelength=-1),
        colorscale=dict(sequential=SEQUENTIAL, diverging=DIVERGING),
        autotypenumbers="strict",
    )
    t.layout.xaxis.update(showline=True, linecolor="#BBBBBB", gridcolor="#ECECEC", zeroline=False)
    t.layout.yaxis.update(showline=True, linecolor="#BBBBBB", gridcolor="#ECECEC", zeroline=False)
    t.data.scatter = [go.Scatter(line=dict(width=2), marker=dict(size=6))]
    # the colour bar's title along its right side: on top, it would sit on the bar's top tick label
    t.data.heatmap = [go.Heatmap(colorscale=SEQUENTIAL, colorbar=dict(outlinewidth=0, ticks="",
                                                                     title=dict(side="right")))]
    return t


pio.templates[TEMPLATE_NAME] = _template()


def role_of(name: str | None) -> str | None:
    """The role a run or trace name stands for (``teacher``, ``student``, ``baseline``) or None.

    Exact names and their common spellings count (``vanilla``, ``no-kd``, ``scratch`` are baselines);
    so does a name that starts with one followed by a separator (``vanilla seed 1``, ``teacher/val``).
    """
    if not name:
        return None
    low = str(name).strip().lower()
    for alias, role in ROLE_ALIASES.items():
        if low == alias or (low.startswith(alias) and len(low) > len(alias) and low[len(alias)] in " _-/(:[,"):
            return role
    return None


def role_color(role: str) -> str:
    """The colour of ``role`` (``teacher``, ``student``, ``baseline`` or an alias such as ``vanilla``)."""
    key = ROLE_ALIASES.get(str(role).lower(), str(role).lower())
    if key not in ROLE_COLORS:
        from kdlab.errors import ConfigError

        raise ConfigError(f"role: {role!r} is not one of {sorted(ROLE_ALIASES)}")
    return ROLE_COLORS[key]


def run_colors(names: Iterable[str], roles: dict[str, str] | None = None) -> dict[str, str]:
    """A colour for each name: its role colour when it has a role (``roles`` first, then ``role_of``),
    else the next colour of ``SEQUENCE`` (cycled). Same names in the same order give the same colours."""
    roles = roles or {}
    out: dict[str, str] = {}
    i = 0
    for n in names:
        if n in out:
            continue
        role = roles.get(n) or role_of(n)
        if role is not None:
            out[n] = role_color(role)
        else:
            out[n] = SEQUENCE[i % len(SEQUENCE)]
            i += 1
    return out


def sequence(n: int) -> list[str]:
    """``n`` qualitative colours (cycled)."""
    return [SEQUENCE[i % len(SEQUENCE)] for i in range(n)]


def apply_theme(fig: go.Figure, title: str | None = None, height: int | None = None,
                **layout: object) -> go.Figure:
    """Give ``fig`` the kdlab template (and an optional title and height); returns the same figure.

    ``title`` is plotly label markup (``<br>``, ``<b>`` work): pass user strings through ``plotly_text``.
    """
    update: dict[str, object] = {"template": TEMPLATE_NAME, **layout}
    if title is not None:
        update["title"] = dict(text=str(title))
    if height is not None:
        update["height"] = int(height)
    return fig.update_layout(**update)  # one update: each one re-validates the layout


@functools.lru_cache(maxsize=64)
def _grid_json(rows: int, cols: int, titles: tuple[str, ...], h_space: float, v_space: float) -> str:
    from plotly.subplots import make_subplots

    layout = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=h_space,
                           vertical_spacing=v_space).layout.to_plotly_json()
    layout.pop("template", None)
    return json.dumps(layout)


def grid_layout(rows: int, cols: int, titles: Iterable[str] = (), h_space: float = 0.09,
                v_space: float = 0.12) -> dict:
    """The layout (axes domains, subplot titles) of a ``rows`` x ``cols`` grid, as ``make_subplots`` lays it
    out, computed once per shape: figures redrawn every second build from it without ``make_subplots``'s
    per-call cost. Subplot ``k`` (row-major from 1) draws on axes ``x{k}``/``y{k}`` (``x``/``y`` for 1)."""
    return json.loads(_grid_json(int(rows), int(cols), tuple(map(str, titles)), float(h_space), float(v_space)))


#: a vertical legend right of the plots, from their top down: figures with subplot titles use it (a legend above
#: the plots would sit on those titles, one below on category tick labels that plotly.js may slant)
LEGEND_RIGHT: dict = {"legend": dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top", yref="paper")}


def legend_below(height: float, top: float = MARGIN["t"], bottom: float = MARGIN["b"],
                 rows: int = 1) -> dict:
    """Layout updates that put a horizontal legend under the plot area, below its x tick labels and x axis
    title, in a figure ``height`` px tall with ``top``/``bottom`` margins (``bottom`` without the legend).

    Room for ``rows`` legend rows is added to the bottom margin; a legend that wraps to more rows (a narrow
    figure) grows the margin downwards, so it never reaches the axis labels or the title above. (Above the
    plot, a wrapping legend would run into the title; plotly.js moves neither.)
    """
    gap = X_LABELS_PX + 8
    b = int(bottom - X_LABELS_PX + gap + rows * LEGEND_ROW_PX + 6)
    plot_px = max(float(height) - top - b, 50.0)
    return {"legend": dict(orientation="h", yref="paper", y=-gap / plot_px, yanchor="top", xref="paper", x=0.0,
                           xanchor="left"),
            "margin": dict(t=int(top), b=b)}


def axis_ref(k: int, axis: str = "x") -> str:
    """Subplot ``k``'s axis name: ``x``, ``x2``... on a trace; ``axis="xaxis"`` gives its layout key."""
    return axis if k == 1 else f"{axis}{k}"


def plotly_text(text: object) -> str:
    """``text`` for a plotly label (trace name, category, title part) shown literally.

    plotly.js reads labels as a small HTML subset (``<b>``, ``<br>``, ``<a href>``...) and decodes entities,
    so a run called ``<b>x</b>`` would render bold and ``<script>`` tags would vanish; escaping ``& < >``
    makes plotly.js show exactly the characters of ``text``.
    """
    return html.escape(str(text), quote=False)


def with_alpha(color: str, alpha: float) -> str:
    """``#RRGGBB`` as an ``rgba(...)`` string with ``alpha``."""
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


__all__ = ["BASELINE", "GAP", "LEGEND_RIGHT", "MARGIN", "ROLE_COLORS", "SEQUENCE", "STUDENT", "TEACHER",
           "TEMPLATE_NAME", "TITLE_PX", "apply_theme", "axis_ref", "grid_layout", "legend_below", "plotly_text",
           "role_color", "role_of", "run_colors", "sequence", "with_alpha"]
