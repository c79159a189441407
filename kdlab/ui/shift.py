"""Shift: distillation under distribution shift. Run the studies (the 8-target benchmark, Meta-DMoE, pair gains,
source-free adaptation, KD3, HARD) as one background ``shift`` job and see its targets, zoo, rankings, pair-gain
heat map and adaptation curves; below, rank the zoo for one target and launch DistillNearest/DistillWeighted
(``SourceSelection``). ``Shift`` is the one component: ``panel()`` is the dashboard face, ``widget()`` the
notebook's."""
from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.errors import unknown
from kdlab.runs.store import Store, open_store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import register_component_page
from kdlab.ui.source_selection import SourceSelection
from kdlab.ui.task_widget import TaskWidget


def shift_tables(saved: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The tables of a saved ``shift`` job: the benchmark's targets (with how much the source choice matters) and
    the zoo's cards."""
    out = {}
    bench = (saved.get("studies") or {}).get("benchmark")
    if bench and bench.get("targets"):
        out["targets"] = pd.DataFrame([{
            "target": t["target"], "classes": t["classes"], "labelled": t["labelled"], "unlabelled": t["unlabelled"],
            "spread (pts)": round(100 * t["spread"], 1), "best source": max(t["single"], key=t["single"].get),
            "metric picks": (t["picked"].get("nearest") or [""])[0],
            **{m: round(100 * a, 1) for m, a in t["methods"].items()}} for t in bench["targets"]])
    if saved.get("zoo"):
        out["zoo"] = pd.DataFrame(saved["zoo"])[["name", "task", "classes", "accuracy", "data"]]
    return out


def shift_view(saved: dict[str, Any]) -> dict[str, Any]:
    """Tables then figures of a saved ``shift`` job, keyed by what they show."""
    from kdlab.viz.shift import study_figures

    return {**shift_tables(saved), **study_figures(saved)}


def shift_message(saved: dict[str, Any]) -> str:
    studies = saved.get("studies") or {}
    return f"{len(studies)} {'study' if len(studies) == 1 else 'studies'} done: {', '.join(studies)}."


class Shift(param.Parameterized):
    """Studies of distillation under shift (a job) and source selection for one target."""

    def __init__(self, store: Store | None = None, **job_params: Any):
        super().__init__()
        self.store = store if store is not None else open_store()
        self.job = JobPanel(self.store, "shift", shift_view, "shift", button="Run studies", exclude=(),
                            empty="Pick the studies and press **Run studies**.", message=shift_message)
        self.job.follow()  # the newest shift job, its parameters in the form; those given here take precedence
        for k, v in job_params.items():
            if k not in self.job.form.param or k == "name":
                raise unknown("shift parameter", k, [p for p in self.job.form.param if p != "name"], where="Shift")
            setattr(self.job.form, k, v)
        self.selection = SourceSelection(self.store)

    @property
    def status(self) -> Any:
        return self.job.status

    @property
    def result(self) -> dict[str, Any] | None:
        return self.job.result

    def run(self) -> Any:
        """Start the studies in a background job (returns its ``RunHandle`` at once)."""
        return self.job.compute()

    def follow(self) -> Any:
        """Show the newest ``shift`` job in the store (e.g. one a notebook started)."""
        return self.job.follow()

    @property
    def busy(self) -> bool:
        """Waiting on its studies or its ranking (the dashboard then polls it every ``BUSY_POLL_MS``)."""
        return self.job.busy or self.selection.job.busy

    def tick(self) -> None:
        self.job.tick()
        self.selection.tick()

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.pane.Markdown("### Shift: distillation under distribution shift"), self.job.panel(),
                         self.selection.panel(), sizing_mode="stretch_width", css_classes=["kdlab-shift"])

    def widget(self, **params: Any) -> ShiftWidget:
        """The ipywidgets face for notebooks: the same job kind with the same parameters as the page's form."""
        return ShiftWidget(self.store, **{**self.job.params(), **params})


class ShiftWidget(TaskWidget):
    """``ShiftWidget(store, studies=["benchmark", "complementary"], ...)``: the studies run in a background job;
    tables and figures appear when it is done (``wait()`` blocks until then)."""

    kind = "shift"
    title = "Run studies"

    def figures(self, result: dict[str, Any]) -> list[Any]:
        return list(shift_view(result).values())

    def done_message(self, result: dict[str, Any]) -> str:
        return shift_message(result)


register_component_page("Shift", Shift, "shift", order=40,
                        doc="Distillation under shift: the target benchmark, pair gains, adaptation curves, and "
                            "source selection for one target.")
