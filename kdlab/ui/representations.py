"""Representations: teacher-student CKA, agreement and embeddings of a finished run, computed by a ``cka`` job.

Faces: ``RepresentationsPage`` (the dashboard page **Representations**) and ``RepresentationsWidget``
(ipywidgets, for notebooks). Both submit the job to the store and draw what it saved (``kdlab.jobs.cka``), so
neither the server nor the kernel computes, and a reopened page shows the job's progress or result.
"""
from __future__ import annotations

import html
from typing import Any

import panel as pn
import param

from kdlab.jobs.cka import CKAResult, load_epochs
from kdlab.runs.store import Store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import TaskWidget


class RepresentationsPage(FinishedRunChoice, param.Parameterized):
    """Pick a finished run, compute its CKA grid, agreement and embeddings in a background job, see them."""

    run_id = param.String(default=None, allow_None=True)
    color_by = param.Selector(default="class", objects=["class", "agreement"])

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-repr-run"])
        self.picker.link(self, value="run_id")
        self.job = JobPanel(store, "cka", self._draw, "repr", fixed=lambda: {"run": self.run_id},
                            empty="press Compute to analyse this run", heights={"embeddings": 460})
        self.color = pn.widgets.RadioButtonGroup.from_param(self.param.color_by, name="colour embeddings by")
        self.warning = pn.pane.Alert("", alert_type="warning", visible=False)
        self.job.button.on_click(lambda _e: setattr(self.warning, "visible", False))  # a new job: its own warning
        self.epochs = pn.pane.Plotly(sizing_mode="stretch_width", height=400, config={"displaylogo": False},
                                     visible=False, css_classes=["kdlab-repr-epochs"])
        self.refresh_options()
        self._picked()

    @property
    def status(self) -> Any:
        return self.job.status

    @property
    def button(self) -> Any:
        return self.job.button

    @property
    def busy(self) -> bool:
        """Waiting on its job (the dashboard then polls it every ``BUSY_POLL_MS``)."""
        return self.job.busy

    @param.depends("run_id", watch=True)
    def _picked(self) -> None:
        """Show the newest cka job of the picked run (its progress or result) and its CKA over training."""
        folder = self.folder()
        if folder is None:
            self.job.status.object = "no finished run with a teacher yet: train one on the Runs page"
            self.job.button.disabled = True
            return
        self.job.follow(of=self.run_id)
        epochs = load_epochs(folder)
        self.epochs.visible = epochs is not None and len(epochs) > 0
        if self.epochs.visible:
            from kdlab.viz.representations import cka_over_epochs

            self.epochs.object = cka_over_epochs(epochs)

    def _draw(self, result: CKAResult) -> dict[str, Any]:
        figs = result.figures(self.color_by)
        self.warning.object, self.warning.visible = html.escape(result.warning or ""), bool(result.warning)
        return {{"cka": "heatmap"}.get(k, k): f for k, f in figs.items()}

    @param.depends("color_by", watch=True)
    def _recolor(self) -> None:
        if self.job.result is not None:
            self.job.show(self.job.result)

    def compute(self) -> Any:
        """Start a cka job on the picked run (as clicking Compute); returns its ``RunHandle``."""
        self.warning.visible = False  # the new job's result says whether it needs one
        return self.job.compute()

    def tick(self) -> None:
        """Mirror the job's progress; draw its figures once it is done (the dashboard calls this each second)."""
        self.job.tick()

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.job.panel(self.picker), self.color, self.warning, self.epochs,
                         sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Representations", RepresentationsPage, "representations", order=30,
                        doc="Teacher-student CKA, agreement and embeddings of a run.")


class RepresentationsWidget(TaskWidget):
    """ipywidgets face: ``RepresentationsWidget(run=run_id, max_samples=...)``; ``compute()`` (or the button)
    submits a cka job; the figures appear when it is done (``wait()`` blocks until then)."""

    kind = "cka"

    def figures(self, result: CKAResult) -> list[Any]:
        return list(result.figures().values())

    def done_message(self, result: CKAResult) -> str:
        return result.warning or "done"
