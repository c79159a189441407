"""Self-contained HTML reports: one file, plotly.js inlined once, nothing fetched from the network.

``build(runs)`` renders a summary table (teacher / student test accuracy, agreement, time per run), a
comparison section when there are several runs, and per run: every figure, notes, the spec as YAML and
the environment. The figures are made by ``report_figures`` (``kdlab.viz`` builders); ``build`` embeds
exactly those, in that order.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.report.runs import RunData, load_runs

# plotly.js config: no logo (a link to plotly.com), no "send to cloud"/"edit in Chart Studio" buttons
PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "showSendToCloud": False, "responsive": True,
                                 "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass
class ReportFigure:
    """A figure of the report: a stable id (the HTML div id), a title, the plotly figure."""

    id: str
    title: str
    figure: go.Figure
    run: str | None = None


@dataclass
class ReportFigures:
    """All figures of a report: ``comparison`` (across runs) and ``per_run`` (one list per run, in order)."""

    comparison: list[ReportFigure] = field(default_factory=list)
    per_run: list[list[ReportFigure]] = field(default_factory=list)

    def all(self) -> list[ReportFigure]:
        return [*self.comparison, *(f for figs in self.per_run for f in figs)]

    def __len__(self) -> int:
        return len(self.all())


def _history_has_data(run: RunData) -> bool:
    if not run.trains_a_classifier:
        return False
    h = run.history
    if isinstance(h, pd.DataFrame):
        return not h.empty
    return bool(h)


# Analysis sections (CKA, frequency, distilled images, ...) plug their figures into every run's part of the
# report here; a section reads the run's artifacts (``run.folder``) and returns [] when it has none.
ReportSection = Callable[[RunData], "list[tuple[str, str, go.Figure]]"]
REPORT_SECTIONS: dict[str, ReportSection] = {}
# Modules whose import registers a section (an analysis issue adds its module here, one line).
SECTION_MODULES: list[str] = ["kdlab.report.representations", "kdlab.report.transfer", "kdlab.report.shift",
                              "kdlab.report.frequency", "kdlab.report.condense", "kdlab.report.text",
                              "kdlab.report.diffusion", "kdlab.report.sweeps"]


def register_report_section(name: str, section: ReportSection | None = None) -> Any:
    """Add ``section(run) -> [(kind, title, figure), ...]`` to every run's figures (usable as a decorator)."""

    def wrap(fn: ReportSection) -> ReportSection:
        REPORT_SECTIONS[name] = fn
        return fn

    return wrap(section) if section is not None else wrap


def run_figures(run: RunData, index: int = 0) -> list[ReportFigure]:
    """The figures of one run: training curves; with predictions, the student's confusion matrix and
    reliability diagram, and the teacher-vs-student per-class accuracy when teacher outputs are there."""
    from kdlab.viz import calibration, confusion_matrix, per_class_gap, training_curves
    from kdlab.viz.theme import plotly_text

    out: list[ReportFigure] = []
    name = plotly_text(run.name)

    def add(kind: str, title: str, fig: go.Figure) -> None:
        out.append(ReportFigure(f"kdlab-run{index}-{kind}", title, fig, run.name))

    if _history_has_data(run):
        add("curves", "training curves",
            training_curves(run.history, title=f"{name}: training curves", teacher_acc=run.teacher_val_acc()))
    p = run.predictions
    if p is not None:
        split = p.split
        if p.teacher is not None:
            add("per-class", "per-class accuracy",
                per_class_gap(p.teacher, p.student, p.labels, p.class_names,
                              title=f"{name}: per-class {split} accuracy, teacher vs student"))
        add("confusion", "confusion matrix",
            confusion_matrix(p.student, p.labels, p.class_names, normalize=True,
                             title=f"{name}: student confusion matrix ({split}, rows normalised)"))
        if p.student.ndim == 2:
            add("calibration", "calibration",
                calibration(p.student, p.labels, title=f"{name}: student reliability ({split})"))
    for module in SECTION_MODULES:
        importlib.import_module(module)
    for section in REPORT_SECTIONS.values():
        for kind, title, fig in section(run):
            add(kind, title, fig)
    return out


def seed_table(runs: list[RunData], key: str = "test/acc") -> pd.DataFrame:
    """One row per run: method, data, seed and the student's ``key`` (the input of ``final_metric_bars``)."""
    rows = []
    for r in runs:
        v = r.student.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            rows.append({"method": r.method or r.name, "group": (r.spec.get("data") or {}).get("name", ""),
                         "seed": r.seed, "run": r.name, "value": float(v)})
    return pd.DataFrame(rows, columns=["method", "group", "seed", "run", "value"])


def comparison_figures(runs: list[RunData]) -> list[ReportFigure]:
    """With two or more runs: validation accuracy (and agreement) overlaid, and test accuracy per method
    as mean ± std over seeds."""
    from kdlab.viz import as_history, compare_runs, final_metric_bars

    if len(runs) < 2:
        return []
    out: list[ReportFigure] = []
    roles = {r.name: "baseline" for r in runs if r.method == "vanilla"}
    with_history = {r.name: r.history for r in runs if _history_has_data(r)}
    teachers = {r.teacher_val_acc() for r in runs}
    shared_teacher = teachers.pop() if len(teachers) == 1 else None  # the same teacher for every run
    if len(with_history) >= 2:
        out.append(ReportFigure("kdlab-compare-val-acc", "validation accuracy",
                                compare_runs(with_history, "val/acc", title="Validation accuracy", roles=roles,
                                             teacher_acc=shared_teacher)))
        if any("val/agreement" in as_history(h).columns for h in with_history.values()):
            out.append(ReportFigure("kdlab-compare-agreement", "agreement",
                                    compare_runs(with_history, "val/agreement", roles=roles,
                                                 title="Validation agreement with the teacher")))
    table = seed_table(runs)
    if len(table) >= 2:
        group = "group" if table["group"].nunique() > 1 else None
        out.append(ReportFigure("kdlab-final-bars", "test accuracy over seeds",
                                final_metric_bars(table.drop(columns=[] if group else ["group"]), group=group,
                                                  title="Student test accuracy (mean ± std over seeds)",
                                                  value_label="test accuracy")))
    return out


def report_figures(runs: Any) -> ReportFigures:
    """Every figure ``build`` puts in the report for ``runs`` (any form ``load_runs`` reads)."""
    rs = runs if isinstance(runs, list) and all(isinstance(r, RunData) for r in runs) else load_runs(runs)
    return ReportFigures(comparison_figures(rs), [run_figures(r, i) for i, r in enumerate(rs)])


# -- rendering ---------------------------------------------------------------------------------------

def figure_html(fig: ReportFigure) -> str:
    """One figure as a ``<div>`` and its ``Plotly.newPlot`` script (no plotly.js, no MathJax, no links)."""
    f = fig.figure
    height = f.layout.height
    return f.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config=PLOTLY_CONFIG,
                     div_id=fig.id, default_width="100%",
                     default_height=f"{int(height)}px" if height else "100%", validate=False)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or isinstance(v, bool):
        return "–" if v is None else str(v)
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "–"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    return str(v)


SUMMARY_COLUMNS = ["run", "status", "data", "method", "teacher", "student", "seed", "epochs",
                   "teacher test acc", "student test acc", "student - teacher", "agreement",
                   "best-val weights test acc", "train time (s)", "time / epoch (s)", "teacher train time (s)"]


def summary_table(runs: list[RunData]) -> pd.DataFrame:
    """The summary table as a DataFrame (one row per run, ``SUMMARY_COLUMNS``)."""
    from kdlab.viz import as_history

    rows = []
    for r in runs:
        s, t, spec = r.student, r.teacher, r.spec
        t_acc, s_acc = _num(t.get("test/acc")), _num(s.get("test/acc"))
        h = as_history(r.history)
        times = h["epoch_time"].dropna().tolist() if "epoch_time" in h.columns else []
        rows.append({
            "run": r.name, "status": r.status or "",
            "data": (spec.get("data") or {}).get("name") or r.params.get("corpus"),
            "method": r.method, "teacher": (spec.get("teacher") or {}).get("name") or r.params.get("teacher_arch"),
            "student": (spec.get("student") or {}).get("name") or r.params.get("student_arch"), "seed": r.seed,
            "epochs": len(h) if len(h) and r.trains_a_classifier else None,
            "teacher test acc": t_acc, "student test acc": s_acc,
            "student - teacher": (s_acc - t_acc) if (s_acc is not None and t_acc is not None) else None,
            "agreement": _num(s.get("test/agreement")),
            "best-val weights test acc": _num((s.get("best_weights") or {}).get("test/acc")),
            "train time (s)": _num(s.get("train_time_s")),
            "time / epoch (s)": sum(times) / len(times) if times else None,
            "teacher train time (s)": _num(t.get("train_time_s")),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _spec_yaml(spec: Mapping[str, Any]) -> str:
    import yaml

    if not spec:
        return "(no spec recorded)"
    return yaml.safe_dump(_plain(spec), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _environment(run: RunData) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in run.environment.items()]


def render(runs: list[RunData], figures: ReportFigures, title: str) -> str:
    """The HTML of a report of ``runs`` with ``figures`` (see ``build``)."""
    import jinja2
    import plotly
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    import kdlab
    from kdlab.report.template import CSS, TEMPLATE

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    table = summary_table(runs)
    table = table.astype(object).where(table.notna(), None)
    # columns no run has a value for (status of folder runs, best-weights accuracy, ...) are left out
    columns = [c for c in SUMMARY_COLUMNS if c == "run" or any(v not in (None, "") for v in table[c])]
    rows = [[{"text": _fmt(v, 1 if c.endswith("(s)") else 4), "num": isinstance(v, (int, float))
              and not isinstance(v, bool)} for c, v in zip(columns, rec, strict=True)]
            for rec in table[columns].itertuples(index=False)]
    run_ctx = [{"name": r.name, "status": r.status, "source": r.source, "notes": r.notes,
                "spec_yaml": _spec_yaml(r.spec), "environment": _environment(r),
                "figures": [{"html": Markup(figure_html(f))} for f in figs]}
               for r, figs in zip(runs, figures.per_run, strict=True)]
    return env.from_string(TEMPLATE).render(
        title=title, css=Markup(CSS), plotlyjs=Markup(get_plotlyjs()), runs=run_ctx,
        comparison=[{"html": Markup(figure_html(f))} for f in figures.comparison],
        summary_columns=columns, summary_rows=rows, kdlab_version=kdlab.__version__,
        plotly_version=plotly.__version__, generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def build(runs: Any, path: str | os.PathLike[str] | None = None, title: str = "kdlab report") -> str:
    """A self-contained HTML report of ``runs``; also written to ``path`` (UTF-8) when given.

    ``runs``: a run folder (or its ``results.json``), a result dict (``ExperimentResult.to_dict()``), a
    ``RunData`` (``kdlab.report.run_from_store`` makes one from the run store), a list of those, or a dict
    ``{display name: source}``. The file opens offline: plotly.js is inlined once, figures reference no
    URL, MathJax is off. Every string that comes from a run is HTML-escaped.
    """
    out = check_output(path) if path is not None else None
    rs = load_runs(runs)
    html = render(rs, report_figures(rs), str(title))
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(html, encoding="utf-8")
            os.replace(tmp, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ConfigError.at("output", f"cannot write {out}: {e.strerror or e}") from None
    return html


def check_output(path: str | os.PathLike[str]) -> Path:
    """``path`` as the report file to write, checked before any work: not a folder, in a folder that exists."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError.at("output", f"{out} is a folder; give a file name, e.g. {out / 'report.html'}")
    if not out.parent.is_dir():
        raise ConfigError.at("output", f"the folder {out.parent} does not exist; create it first or write the "
                             "report elsewhere")
    return out
