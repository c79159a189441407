"""Frequency: which frequencies of the teacher's knowledge the student took, for images and for graphs.

The work is done by two job kinds (``kdlab.jobs.frequency``: band curves, Fourier heat maps and feature spectra
of a finished run; ``kdlab.jobs.graph_kd``: GCN teacher vs MLP, KD-MLP and FF-G2M-MLP on a CSBM graph). Faces:
``FrequencyPage`` (the dashboard page **Frequency**) and ``FrequencyWidget`` / ``GraphKDWidget`` (ipywidgets);
both submit jobs to the store and draw what they saved.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.analysis.frequency import FrequencyArtifacts
from kdlab.jobs.frequency import figures
from kdlab.jobs.graph_kd import graph_table
from kdlab.runs.store import Store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import TaskWidget


def graph_figures(table: pd.DataFrame) -> dict[str, Any]:
    """The study's energy bars and its table (``mean ± std``)."""
    from kdlab.viz.frequency import graph_energy_bars

    return {"graph": graph_energy_bars(table), "graph-table": graph_table(table)}


def graph_message(table: pd.DataFrame) -> str:
    """The study's status line: how many seeds its ``mean ± std`` columns average over."""
    return f"done: {int(table['seeds'].iloc[0])} seed(s)"


class FrequencyPage(FinishedRunChoice, param.Parameterized):
    """Images: pick a finished run, compute band curves / Fourier heat maps / spectra. Graphs: GNN-to-MLP study."""

    run_id = param.String(default=None, allow_None=True)

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-freq-run"])
        self.picker.link(self, value="run_id")
        self.images = JobPanel(store, "frequency", figures, "freq", fixed=lambda: {"run": self.run_id},
                               exclude=("run", "compare"), empty="press Compute to analyse this run",
                               heights={"heatmaps": 400, "spectra": 400})
        self.graphs = JobPanel(store, "graph_kd", graph_figures, "freq-graph", button="Run GNN-to-MLP study",
                               empty="GCN teacher vs MLP students on a CSBM graph: press Run to start",
                               heights={"graph": 400}, message=graph_message)
        self.refresh_options()
        self._picked()
        self.graphs.follow()

    @property
    def busy(self) -> bool:
        """Waiting on one of its jobs (the dashboard then polls it every ``BUSY_POLL_MS``)."""
        return self.images.busy or self.graphs.busy

    @param.depends("run_id", watch=True)
    def _picked(self) -> None:
        if self.folder() is None:
            self.images.status.object = "no finished run yet: train one on the Runs page (the graph study needs none)"
            self.images.button.disabled = True
            return
        self.images.follow(of=self.run_id)

    def compute(self) -> Any:
        """Start a frequency job on the picked run (as clicking Compute)."""
        return self.images.compute()

    def compute_graph(self) -> Any:
        """Start the GNN-to-MLP study (as clicking its button)."""
        return self.graphs.compute()

    def tick(self) -> None:
        """Mirror both jobs' progress; draw their figures when done (the dashboard calls this each second)."""
        self.images.tick()
        self.graphs.tick()

    def panel(self) -> pn.viewable.Viewable:
        images = pn.Column(pn.pane.Markdown("### Images: band accuracy, Fourier heat maps, feature spectra"),
                           self.images.panel(self.picker), sizing_mode="stretch_width")
        graphs = pn.Column(pn.pane.Markdown("### Graphs: GNN-to-MLP distillation (FF-G2M)"), self.graphs.panel(),
                           sizing_mode="stretch_width")
        return pn.Column(images, graphs, sizing_mode="stretch_width", css_classes=["kdlab-frequency"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Frequency", FrequencyPage, "frequency", order=50,
                        doc="Which frequencies the student took: band curves, Fourier heat maps, GNN-to-MLP spectra.")


# ------------------------------------------------------------------------------------- notebook faces

class FrequencyWidget(TaskWidget):
    """``FrequencyWidget(run=run_id, compare=[other_run_id], n_images=..., heatmap_images=...)``: band curves,
    Fourier heat maps and feature spectra of a finished run's teacher and student, as a background job."""

    kind = "frequency"

    def figures(self, result: FrequencyArtifacts) -> list[Any]:
        return list(figures(result).values())


class GraphKDWidget(TaskWidget):
    """``GraphKDWidget(homophily=0.8, seeds=3)``: the GNN-to-MLP study on CSBM as a background job."""

    kind = "graph_kd"
    title = "Run study"

    def figures(self, result: pd.DataFrame) -> list[Any]:
        return list(graph_figures(result).values())
