"""Frequency: which frequencies of the teacher's knowledge the student took, for images and for graphs.

Plain calls: ``analyze_run(progress, run_dir, ...)`` (band curves, Fourier heat maps and feature spectra of a
finished run's teacher and student; saved where the report reads them) and ``graph_study(progress, ...)``
(GCN teacher vs MLP, KD-MLP and FF-G2M-MLP on a CSBM graph). Faces: ``FrequencyPage`` (the dashboard page
**Frequency**) and ``FrequencyWidget`` / ``GraphKDWidget`` (ipywidgets). Work goes through
``kdlab.ui.tasks.submit`` with progress, so neither the server nor the kernel blocks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from kdlab.analysis.frequency import FrequencyArtifacts, analyze
from kdlab.analysis.graph_frequency import distillation_study, summarize_study
from kdlab.errors import ConfigError
from kdlab.runs.store import Store
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import TaskWidget
from kdlab.ui.tasks import Task, poll, show_queued, submit

SPLITS = ("test", "val")
CUTOFFS = tuple(float(c) for c in np.round(np.linspace(0.1, 1.0, 10), 2))


def figures(art: FrequencyArtifacts) -> dict[str, Any]:
    """The figures of what ``art`` holds: bands, agreement, heatmaps, spectra, graph (absent parts skipped)."""
    from kdlab.viz.frequency import band_accuracy_curves, feature_spectra, fourier_heatmaps, graph_energy_bars

    out: dict[str, Any] = {}
    if art.bands is not None and len(art.bands):
        out["bands"] = band_accuracy_curves(art.bands)
        if art.bands["agreement"].notna().any() and art.bands["model"].nunique() > 1:
            out["agreement"] = band_accuracy_curves(art.bands, metric="agreement")
    if art.heatmaps:
        out["heatmaps"] = fourier_heatmaps(art.heatmaps)
    if art.spectra is not None and len(art.spectra):
        out["spectra"] = feature_spectra(art.spectra)
    if art.graph is not None and len(art.graph):
        out["graph"] = graph_energy_bars(art.graph)
    return out


def analyze_run(progress: Any, folder: str | Path, split: str = "test", n_images: int = 500,
                heatmap_images: int = 100, eps: float = 4.0, cutoffs: Sequence[float] = CUTOFFS) -> FrequencyArtifacts:
    """Frequency study of a finished run's teacher and student on ``n_images`` of ``split``; the artifacts are
    saved into the run folder (the report's Frequency section reads them)."""
    from kdlab.ui.representations import run_models

    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {list(SPLITS)}")
    teacher, student, splits = run_models(folder)
    data = getattr(splits, split)
    n = min(int(n_images), len(data))
    art = analyze({"teacher": teacher, "student": student}, data.x[:n], data.y[:n], cutoffs,
                  heatmap_images=min(int(heatmap_images), n), eps=eps, progress=progress)
    old = FrequencyArtifacts.load(folder)
    art.graph = old.graph
    art.save(folder)
    return art


def graph_study(progress: Any, homophily: float = 0.8, seeds: Sequence[int] = (0,), nodes: int = 1000,
                signal: float = 0.09, features: int = 1024, avg_degree: float = 4.0, epochs: int = 200,
                folder: str | Path | None = None) -> pd.DataFrame:
    """GCN teacher, MLP, KD-MLP and FF-G2M-MLP on a CSBM graph; mean and std over ``seeds`` per model (saved
    into ``folder`` when given). The defaults are the regime of citation graphs: more features than nodes (the
    MLP can fit every node's target) and a low degree, where FF-G2M's smoothed targets pay off; with few
    features (32, signal 0.5, degree 8) the MLP is feature-limited and vanilla KD does better (BENCHMARKS.md)."""
    rows = distillation_study("csbm", seeds=list(seeds), epochs=epochs, progress=progress, nodes=nodes,
                              homophily=homophily, signal=signal, features=features, avg_degree=avg_degree)
    table = summarize_study(rows)
    if folder is not None:
        art = FrequencyArtifacts.load(folder)
        art.graph = table
        art.save(folder)
    return table


def graph_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study summary as shown: accuracy and energy columns as ``mean ± std``."""
    out = pd.DataFrame({"model": table["model"]})
    for col in ("test_acc", "high_fraction", "hf_similarity"):
        out[col] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(table[col], table[f"{col}_std"], strict=True)]
    return out


class FrequencyPage(FinishedRunChoice, param.Parameterized):
    """Images: pick a finished run, compute band curves / Fourier heat maps / spectra. Graphs: GNN-to-MLP study."""

    run_id = param.String(default=None, allow_None=True)
    split = param.Selector(default="test", objects=list(SPLITS))
    n_images = param.Integer(default=500, bounds=(10, 10_000), doc="images for the band curves")
    heatmap_images = param.Integer(default=100, bounds=(0, 2000), doc="images for the Fourier heat maps (0: none)")
    eps = param.Number(default=10.0, bounds=(0.01, 100.0), doc="L2 norm of the Fourier perturbation (MNIST: ~10)")
    homophily = param.Number(default=0.8, bounds=(0.0, 1.0), step=0.05, doc="CSBM edge homophily")
    avg_degree = param.Number(default=4.0, bounds=(0.5, 50.0), step=0.5, doc="CSBM expected node degree")
    features = param.Integer(default=1024, bounds=(1, 4096), doc="CSBM node feature dimension")
    signal = param.Number(default=0.09, bounds=(0.0, 5.0), step=0.01,
                          doc="class-mean distance per feature (32 features: about 0.5)")
    seeds = param.Integer(default=1, bounds=(1, 10), doc="graphs (seeds) to average over")
    graph_epochs = param.Integer(default=200, bounds=(10, 2000))

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.task: Task | None = None
        self.graph_task: Task | None = None
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-freq-run"])
        self.picker.link(self, value="run_id")
        self.controls = pn.Param(self.param, parameters=["split", "n_images", "heatmap_images", "eps"],
                                 show_name=False, default_layout=pn.Row)
        self.button = pn.widgets.Button(name="Compute", button_type="primary", css_classes=["kdlab-freq-compute"])
        self.button.on_click(lambda _e: self.compute())
        self.progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.status = pn.pane.Markdown("", css_classes=["kdlab-freq-status"])
        cfg = {"displaylogo": False}
        self.plots = {k: pn.pane.Plotly(sizing_mode="stretch_width", height=h, config=cfg,
                                        css_classes=[f"kdlab-freq-{k}"])
                      for k, h in (("bands", 420), ("agreement", 420), ("heatmaps", 400), ("spectra", 400))}
        self.graph_controls = pn.Param(self.param, parameters=["homophily", "avg_degree", "features", "signal", "seeds",
                                                                 "graph_epochs"], show_name=False,
                                       default_layout=pn.Row)
        self.graph_button = pn.widgets.Button(name="Run GNN-to-MLP study", button_type="primary",
                                              css_classes=["kdlab-freq-graph-run"])
        self.graph_button.on_click(lambda _e: self.compute_graph())
        self.graph_progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.graph_status = pn.pane.Markdown("GCN teacher vs MLP students on a CSBM graph",
                                             css_classes=["kdlab-freq-graph-status"])
        self.graph_plot = pn.pane.Plotly(sizing_mode="stretch_width", height=400, config=cfg, visible=False,
                                         css_classes=["kdlab-freq-graph"])
        self.graph_tab = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, visible=False,
                                              sizing_mode="stretch_width")
        self.refresh_options()
        self._show_saved()

    @param.depends("run_id", watch=True)
    def _show_saved(self) -> None:
        """Show the frequency artifacts this run already has."""
        folder = self.folder()
        if folder is None:
            self.status.object = "no finished run yet: train one on the Runs page (the graph study needs none)"
            return
        art = FrequencyArtifacts.load(folder)
        self.show(art, saved=True)

    def compute(self) -> Task | None:
        """Analyse the picked run in the background (as clicking Compute)."""
        folder = self.folder()
        if folder is None:
            self.status.object = "pick a run first"
            return None
        if self.task is not None and not self.task.done:
            return self.task
        self.task = submit(analyze_run, folder, split=self.split, n_images=self.n_images,
                           heatmap_images=self.heatmap_images, eps=self.eps)
        show_queued(self.button, self.progress, self.status)
        return self.task

    def compute_graph(self) -> Task:
        """Run the GNN-to-MLP study in the background (as clicking its button)."""
        if self.graph_task is not None and not self.graph_task.done:
            return self.graph_task
        self.graph_task = submit(graph_study, homophily=self.homophily, seeds=list(range(self.seeds)),
                                 signal=self.signal, features=self.features, avg_degree=self.avg_degree,
                                 epochs=self.graph_epochs, folder=self.folder())
        show_queued(self.graph_button, self.graph_progress, self.graph_status)
        return self.graph_task

    def tick(self) -> None:
        """Mirror both tasks' progress; draw their figures when done (the dashboard calls this each second)."""
        poll(self.task, self.button, self.progress, self.status, self.show)
        poll(self.graph_task, self.graph_button, self.graph_progress, self.graph_status, self.show_graph)

    def show(self, art: FrequencyArtifacts, saved: bool = False) -> None:
        figs = figures(art)
        for key, pane in self.plots.items():
            pane.object = figs.get(key)
            pane.visible = key in figs
        if art.graph is not None:
            self.show_graph(art.graph)
        if saved:
            self.status.object = ("saved results shown; Compute to refresh" if figs
                                  else "press Compute to analyse this run")
        else:
            self.status.object = "done"

    def show_graph(self, table: pd.DataFrame) -> None:
        from kdlab.viz.frequency import graph_energy_bars

        self.graph_plot.object = graph_energy_bars(table)
        self.graph_tab.value = graph_table(table)
        self.graph_plot.visible = self.graph_tab.visible = True
        self.graph_status.object = f"done: {int(table['seeds'].iloc[0])} seed(s)"

    def panel(self) -> pn.viewable.Viewable:
        images = pn.Column(pn.pane.Markdown("### Images: band accuracy, Fourier heat maps, feature spectra"),
                           pn.Row(self.picker, self.button, self.progress), self.controls, self.status,
                           *self.plots.values(), sizing_mode="stretch_width")
        graphs = pn.Column(pn.pane.Markdown("### Graphs: GNN-to-MLP distillation (FF-G2M)"),
                           pn.Row(self.graph_button, self.graph_progress), self.graph_controls, self.graph_status,
                           self.graph_plot, self.graph_tab, sizing_mode="stretch_width")
        return pn.Column(images, graphs, sizing_mode="stretch_width", css_classes=["kdlab-frequency"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Frequency", FrequencyPage, "frequency", order=50,
                        doc="Which frequencies the student took: band curves, Fourier heat maps, GNN-to-MLP spectra.")


# ------------------------------------------------------------------------------------- notebook faces

class FrequencyWidget(TaskWidget):
    """``FrequencyWidget({"teacher": t, "student": s, ...}, x, y)`` or ``FrequencyWidget(run_dir=...)``: band
    curves, Fourier heat maps and feature spectra, computed in the background."""

    def __init__(self, models: Mapping[str, Any] | None = None, x: Any = None, y: Any = None,
                 run_dir: str | Path | None = None, **kwargs: Any):
        if run_dir is None and (not models or x is None or y is None):
            raise ConfigError("give models (name -> model), images x and labels y, or run_dir of a finished run")
        self.models, self.x, self.y, self.run_dir, self.kwargs = models, x, y, run_dir, kwargs
        super().__init__()

    def submit(self) -> Task:
        if self.run_dir is not None:
            return submit(analyze_run, self.run_dir, **self.kwargs)
        return submit(_analyze, self.models, self.x, self.y, **self.kwargs)

    def figures(self, result: FrequencyArtifacts) -> list[Any]:
        return list(figures(result).values())


def _analyze(progress: Any, models: Mapping[str, Any], x: Any, y: Any, **kwargs: Any) -> FrequencyArtifacts:
    return analyze(models, x, y, progress=progress, **kwargs)


class GraphKDWidget(TaskWidget):
    """``GraphKDWidget(homophily=0.8, seeds=(0, 1, 2))``: the GNN-to-MLP study on CSBM in the background."""

    title = "Run study"

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        super().__init__()

    def submit(self) -> Task:
        return submit(graph_study, **self.kwargs)

    def figures(self, result: pd.DataFrame) -> list[Any]:
        from kdlab.viz.frequency import graph_energy_bars

        return [graph_energy_bars(result), graph_table(result)]
