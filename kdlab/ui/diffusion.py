"""Diffusion: distill a many-step diffusion teacher into a few-step student and see what the steps bought.

The work is the ``diffusion`` job (``kdlab.jobs.diffusion``). Faces: ``DiffusionPage`` (the dashboard page
**Diffusion**: launch form built from the job's declared parameters, its live loss terms, and a finished run's
views) and ``DiffusionWidget`` (ipywidgets, for notebooks). Both read what the job saved, through its reader
``load_diffusion_artifacts``, and draw it with ``kdlab.viz.diffusion``: the method card, quality against the number
of function evaluations, the quality table, sample grids by steps, denoising trajectories, the student at each
distillation snapshot, the nearest training images of student samples, the loss terms and the sampling speed.
Nothing here computes more than picking arrays out of the run's files.
"""
from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from kdlab.errors import ConfigError
from kdlab.jobs.diffusion import DiffusionArtifacts, load_diffusion_artifacts
from kdlab.runs.background import RunHandle
from kdlab.runs.store import Store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import LiveTaskWidget

KIND = "diffusion"
ORDER = ("card", "quality", "table", "grid", "trajectories", "snapshots", "neighbours", "curves", "speed")


class AnimatedPlotly(pn.pane.Plotly):
    """A Plotly pane that keeps the figure's animation frames (Panel 1.9's pane sends only data and layout, so the
    sliders and play buttons of the trajectories and snapshots would move nothing)."""

    @classmethod
    def _plotly_json_wrapper(cls, fig: Any) -> dict[str, Any]:
        from plotly.utils import PlotlyJSONEncoder

        out = super()._plotly_json_wrapper(fig)
        frames = getattr(fig, "frames", None) or ()
        out["frames"] = json.loads(json.dumps([f.to_plotly_json() for f in frames], cls=PlotlyJSONEncoder))
        return out


def method_names() -> list[str]:
    """The registered diffusion distillation methods (the job's default alone when ``kdlab.diffusion`` is absent)."""
    from kdlab.runs.job import get_job

    default = get_job(KIND).params["method"].default
    try:
        from kdlab.diffusion import DIFFUSION_METHODS

        names = list(DIFFUSION_METHODS.names())
    except ImportError:
        names = []
    return names or [default]


def snapshot_metric(art: DiffusionArtifacts) -> str:
    """The metric saved with the snapshots: ``fd`` for images, ``swd`` for 2-D data."""
    image = art.summary.get("is_image")
    if image is None and art.quality is not None:
        image = "fd" in art.quality.columns
    return "fd" if image else "swd"


def figures(art: DiffusionArtifacts | None, metrics: pd.DataFrame | None = None,
            metric: str | None = None) -> dict[str, Any]:
    """The views of what a ``diffusion`` run saved: ``card`` (method, paper, simplification), ``quality`` (against
    NFE, in ``metric``), ``table``, ``grid`` (samples by steps), ``trajectories``, ``snapshots``, ``neighbours``
    (images), ``curves`` (with ``metrics``), ``speed`` (absent parts skipped)."""
    from kdlab.viz import diffusion as viz

    out: dict[str, Any] = {}
    if art is None:
        return out
    s = art.summary or {}
    if s.get("method"):
        out["card"] = viz.method_card(s, title="Method")
    if art.quality is not None and len(art.quality):
        ms = viz.metrics_of(art.quality)
        out["quality"] = viz.quality_vs_nfe(art.quality, metric if metric in ms else None)
        out["table"] = viz.quality_table(art.quality)
    reference = art.samples.get("reference")
    if viz.model_keys(art.samples):
        out["grid"] = viz.sample_grid(art.samples)
    if "teacher" in art.trajectories and "student" in art.trajectories:
        out["trajectories"] = viz.trajectory_figure(art.trajectories, reference=reference)  # its own labels
    if art.snapshots and len(np.asarray(art.snapshots.get("step", []))):
        out["snapshots"] = viz.snapshot_figure(art.snapshots, reference=reference, metric=snapshot_metric(art))
    if art.neighbours and "neighbours" in art.neighbours:
        out["neighbours"] = viz.neighbours_figure(art.neighbours)
    if metrics is not None and len(metrics) and metrics["key"].astype(str).str.startswith("loss/").any():
        out["curves"] = viz.diffusion_curves(metrics)
    if s.get("samples_per_second"):
        out["speed"] = viz.speed_bars(s)
    return out


def find_run(store: Store, **params: Any) -> RunHandle | None:
    """The newest completed ``diffusion`` run of ``store`` whose saved parameters include ``params`` (None when there
    is none): re-executing a notebook shows the run it launched before instead of distilling again."""
    from kdlab.runs.job import get_job

    declared = get_job(KIND).params
    unknown = [k for k in params if k not in declared]
    if unknown:
        raise ConfigError.at(unknown[0], "not a parameter of the diffusion job", sorted(declared))
    for rec in store.jobs(KIND):  # newest first
        saved = rec.spec.get("params") or {}
        if rec.status == "completed" and all(saved.get(k) == v for k, v in params.items()):
            return RunHandle(store, rec.id)
    return None


def _best(q: pd.DataFrame, who: str, metric: str, fewest: bool) -> tuple[int, float] | None:
    d = q[q["who"].astype(str) == who]
    if not len(d):
        return None
    row = d.sort_values("steps").iloc[0 if fewest else -1]
    return int(row["steps"]), float(pd.to_numeric(row[metric], errors="coerce"))


def summary_line(art: DiffusionArtifacts) -> str:
    """One line about a run: method and data, the student at its fewest steps against the teacher at its most, and
    how many times faster the student samples."""
    from kdlab.viz.diffusion import default_metric, speedup

    s = art.summary or {}
    parts = [f"method {s.get('method', '?')} on {s.get('data', '?')}"]
    if art.quality is not None and len(art.quality):
        m = default_metric(art.quality)
        st, te = _best(art.quality, "student", m, True), _best(art.quality, "teacher", m, False)
        if st is not None:
            parts.append(f"student {st[0]} step{'s' if st[0] != 1 else ''} {m} {st[1]:.4g}")
        if te is not None:
            parts.append(f"teacher {te[0]} steps {m} {te[1]:.4g}")
    ratio = speedup(s.get("samples_per_second") or {})
    if ratio is not None:
        parts.append(f"student at {ratio[1]} step{'s' if ratio[1] != 1 else ''} samples {ratio[0]:,.0f}× faster "
                     f"than the teacher at {ratio[2]} steps")
    return " · ".join(parts)


# ------------------------------------------------------------------------------------------ dashboard face

class DiffusionPage(FinishedRunChoice, param.Parameterized):
    """Launch a ``diffusion`` run (form from its declared parameters) and follow its loss terms live; pick a
    finished run and see quality against NFE, samples by steps, trajectories, snapshots and nearest neighbours."""

    run_id = param.String(default=None, allow_None=True)
    run_kind = KIND

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        names = method_names()
        default = "progressive" if "progressive" in names else names[0]
        # the method and its parameters (a dict, which the generic form does not draw) are the page's own widgets
        self.method = pn.widgets.Select(name="method", options=names, value=default, width=200,
                                        css_classes=["kdlab-diffusion-method"])
        self.method_params = pn.widgets.TextInput(name="method parameters (JSON)", value="{}", width=260,
                                                  css_classes=["kdlab-diffusion-method-params"])
        self.job = JobPanel(store, KIND, self._launched, "diffusion-launch", button="Launch distillation",
                            exclude=("method", "method_params"), fixed=self._method,
                            empty="set the parameters and press Launch distillation (a background run)",
                            heights={"quality": 440})
        self.job.figures.visible = False  # a finished run is shown below (the picker switches to it)
        self.live = pn.pane.Plotly(sizing_mode="stretch_width", height=400, visible=False,
                                   config={"displaylogo": False}, css_classes=["kdlab-diffusion-live"])
        self._live_rows = -1
        self.picker = pn.widgets.Select(name="finished run", options={}, width=420,
                                        css_classes=["kdlab-diffusion-run"])
        self.picker.link(self, value="run_id")
        self.metric = pn.widgets.Select(name="quality metric", options=[], width=200,
                                        css_classes=["kdlab-diffusion-metric"])
        self.metric.param.watch(lambda _e: self._redraw_quality(), "value")
        self.info = pn.pane.Markdown("", css_classes=["kdlab-diffusion-info"], sizing_mode="stretch_width")
        self.art: DiffusionArtifacts | None = None
        self.panes: dict[str, Any] = {}
        self.views = pn.Column(sizing_mode="stretch_width")
        self.refresh_options()
        self._picked()
        if self.job.follow() is not None:  # the followed run's method in the page's own widgets
            saved = self.job.task.record.spec.get("params") or {}
            if saved.get("method") in self.method.options:
                self.method.value = saved["method"]
            self.method_params.value = json.dumps(saved.get("method_params") or {})

    # -- the launched job ------------------------------------------------------------------------------
    def _method(self) -> dict[str, Any]:
        try:
            hp = json.loads(self.method_params.value or "{}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"method parameters: not JSON ({e.msg}); e.g. {{\"rounds\": 2}}") from None
        if not isinstance(hp, dict):
            raise ConfigError("method parameters: give a JSON object, e.g. {\"rounds\": 2}")
        return {"method": self.method.value, "method_params": hp}

    def _launched(self, art: DiffusionArtifacts) -> dict[str, Any]:
        """When the launched job is done: its quality curves here, and the run chosen in the picker below."""
        from kdlab.viz.diffusion import quality_vs_nfe

        task = self.job.task
        if task is not None and task.id != self.run_id:
            self.refresh_options()
            self.picker.value = task.id
        return {"quality": quality_vs_nfe(art.quality)} if art is not None and art.quality is not None else {}

    def launch(self, **params: Any) -> Any:
        """Start a ``diffusion`` run with the form's parameters (``params`` override them), as the button does."""
        if "method" in params:
            method = params.pop("method")
            if method not in self.method.options:
                self.method.options = [*self.method.options, method]
            self.method.value = method
        if "method_params" in params:
            self.method_params.value = json.dumps(params.pop("method_params"))
        if params:
            self.job.form.param.update(**params)
        return self.job.compute()

    def _tick_live(self) -> None:
        task = self.job.task
        if task is None or task.done:  # its curves are then among the finished run's views
            self.live.visible = False
            return
        metrics = self.store.metrics(task.id)
        rows = int(metrics["key"].astype(str).str.startswith("loss/").sum()) if len(metrics) else 0
        if rows and rows != self._live_rows:
            from kdlab.viz.diffusion import diffusion_curves

            self.live.object = diffusion_curves(metrics, title="Live: loss terms and quality at snapshots")
            self.live.visible = True
        self._live_rows = rows

    # -- a finished run ------------------------------------------------------------------------------
    @param.depends("run_id", watch=True)
    def _picked(self) -> None:
        folder = self.folder()
        if folder is None:
            self.art = None
            self.info.object = "no finished diffusion run yet: launch one above"
            self.metric.options = []
            self._show({})
            return
        from kdlab.viz.diffusion import default_metric, metrics_of

        self.art = art = load_diffusion_artifacts(folder)
        self.info.object = html.escape(summary_line(art))
        if art.quality is not None and len(art.quality):
            ms = metrics_of(art.quality)
            keep = self.metric.value if self.metric.value in ms else default_metric(art.quality)
            self.metric.param.update(options=ms, value=keep)
        else:
            self.metric.options = []
        self._show(figures(art, self.store.metrics(self.run_id), self.metric.value))

    def _redraw_quality(self) -> None:
        art = self.art
        if art is None or art.quality is None or self.metric.value not in self.metric.options:
            return
        from kdlab.viz.diffusion import quality_vs_nfe

        self._show({"quality": quality_vs_nfe(art.quality, self.metric.value)}, only=True)

    def _show(self, drawn: dict[str, Any], only: bool = False) -> None:
        """Draw ``drawn`` in one pane per view (kept in ``ORDER``); the others hidden unless ``only`` updates."""
        for key in sorted(drawn, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
            obj = drawn[key]
            pane = self.panes.get(key)
            if pane is None:
                pane = self.panes[key] = AnimatedPlotly(obj, sizing_mode="stretch_width",
                                                        height=int(obj.layout.height or 420),
                                                        config={"displaylogo": False},
                                                        css_classes=[f"kdlab-diffusion-{key}"])
                self.views.append(pane)
            pane.object, pane.height = obj, int(obj.layout.height or 420)
            pane.visible = True
        if only:
            return
        for key, pane in self.panes.items():
            pane.visible = key in drawn
        rank = {id(p): ORDER.index(k) if k in ORDER else len(ORDER) for k, p in self.panes.items()}
        ordered = sorted(self.views.objects, key=lambda p: rank.get(id(p), len(ORDER)))
        if [id(p) for p in ordered] != [id(p) for p in self.views.objects]:  # a view first drawn by a later run
            self.views.objects = ordered

    def tick(self) -> None:
        """Mirror the launched job and its live loss terms (each second)."""
        self.job.tick()
        self._tick_live()

    def panel(self) -> pn.viewable.Viewable:
        launch = pn.Column(pn.pane.Markdown("### Distill a diffusion model"),
                           pn.FlexBox(self.method, self.method_params, sizing_mode="stretch_width"), self.job.panel(),
                           self.live, sizing_mode="stretch_width")
        runs = pn.Column(pn.pane.Markdown("### A finished run"), pn.FlexBox(self.picker, self.metric), self.info,
                         self.views, sizing_mode="stretch_width")
        return pn.Column(launch, runs, sizing_mode="stretch_width", css_classes=["kdlab-diffusion"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Diffusion", DiffusionPage, "diffusion", order=70,
                        doc="Distill a diffusion teacher into a few-step student: quality against steps, samples.")


# ------------------------------------------------------------------------------------------ notebook face

class DiffusionWidget(LiveTaskWidget):
    """``DiffusionWidget(data="eight_gaussians", method=..., steps=...)`` (any ``diffusion`` parameter): the run as a
    background job, its loss terms drawn live while it trains, then its views (``figures``)."""

    kind = KIND
    title = "Distill"

    def views(self, result: DiffusionArtifacts | None = None, metric: str | None = None) -> dict[str, Any]:
        """The run's views by name (``card``, ``quality``, ``table``, ``grid``, ...), as the page draws them."""
        result = result if result is not None else self.result
        metrics = self.store.metrics(self.task.id) if self.task is not None else None
        return figures(result, metrics, metric)

    def figures(self, result: DiffusionArtifacts) -> list[Any]:
        return list(self.views(result).values())

    def done_message(self, result: DiffusionArtifacts) -> str:
        return "done: " + summary_line(result)

    def live_figure(self, metrics: Any) -> Any:
        from kdlab.viz.diffusion import diffusion_curves

        return diffusion_curves(metrics, title="Live: loss terms and quality at snapshots")


__all__ = ["AnimatedPlotly", "DiffusionPage", "DiffusionWidget", "figures", "find_run", "method_names",
           "snapshot_metric", "summary_line"]
