"""Distilled images: look at a condensation run's synthetic set, scrub through its snapshots, find each
synthetic image's nearest real neighbours (pixel or feature space), compare with the class means.

Plain calls: ``neighbours(progress, synthetic, real, space=...)`` and ``launch_condensation(...)``. Faces:
``DistilledImagesPage`` (the dashboard page **Distilled images**, with an iteration slider) and
``DistilledImagesWidget`` (ipywidgets, for notebooks). Neighbour searches run through
``kdlab.ui.tasks.submit`` with progress, so neither the server nor the kernel blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import panel as pn
import param
import torch

from kdlab.condense import CONVNET_PARAMS, SyntheticSet, nearest_real
from kdlab.condense.neighbours import SPACES
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.runs.condense import list_snapshots, load_snapshot, load_synthetic
from kdlab.runs.store import Store
from kdlab.ui.pages import register_component_page
from kdlab.ui.task_widget import TaskWidget
from kdlab.ui.tasks import Task, poll, show_queued, submit


@dataclass
class Neighbours:
    """The nearest real images of the first synthetic image of each class, and the class means figure data."""

    synthetic: torch.Tensor
    rows: list[str]
    index: torch.Tensor
    distances: torch.Tensor
    space: str
    real: ArrayDataset


def _first_per_class(syn: SyntheticSet) -> list[int]:
    return [int((syn.y == k).nonzero()[0, 0]) for k in range(syn.num_classes) if (syn.y == k).any()]


def neighbours(progress: Any, synthetic: SyntheticSet, real: ArrayDataset, space: str = "pixel", k: int = 5,
               seed: int = 0) -> Neighbours:
    """Nearest real neighbours of each class's first synthetic image. ``space='feature'`` compares the
    embeddings of a randomly initialised ConvNet-128 (DM's view of the data) on normalised images."""
    if space not in SPACES:
        raise ConfigError(f"space: {space!r} is not one of {list(SPACES)}")
    if real.in_shape != synthetic.in_shape:
        raise ConfigError(f"real data {real.in_shape} and synthetic images {synthetic.in_shape} differ in shape")
    progress(0, 2, f"searching {len(real)} real images ({space} space)")
    first = _first_per_class(synthetic)
    embed = None
    if space == "feature":
        from kdlab.condense.matching import embed as embed_fn
        from kdlab.models import create

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = create("convnet", synthetic.num_classes, synthetic.in_shape, **CONVNET_PARAMS).eval()
        m = torch.tensor(synthetic.mean).view(1, -1, 1, 1)
        s = torch.tensor(synthetic.std).view(1, -1, 1, 1)
        embed = lambda x: embed_fn(net, (x - m) / s)  # noqa: E731
    idx, dist = nearest_real(synthetic.x[first], real.x, k=min(k, len(real)), embed=embed)
    progress(2, 2, "done")
    return Neighbours(synthetic.x[first], [synthetic.classes[int(synthetic.y[i])] for i in first], idx, dist,
                      space, real)


def neighbour_figures(n: Neighbours, synthetic: SyntheticSet) -> list[Any]:
    """The neighbours figure and the class-means-vs-synthetic figure."""
    from kdlab.viz.condense import mean_vs_synthetic, neighbours_figure

    return [neighbours_figure(n.synthetic, n.real.x, n.index, n.distances, rows=n.rows, space=n.space),
            mean_vs_synthetic(n.real.x, n.real.y, synthetic.x, synthetic.y, synthetic.classes)]


def launch_condensation(store: Store, data: str = "mnist5k", method: str = "dm", ipc: int = 1,
                        iterations: int = 100, seed: int = 0, **params: Any) -> str:
    """Start a condensation run in the background (as the page's Launch button); returns its id."""
    from kdlab.runs import launch

    spec = {"name": f"{method}-ipc{ipc}-{data}", "task": "condense", "seed": seed, "device": "cpu",
            "data": {"name": data}, "condense": {"params": {"method": method, "ipc": ipc, "iterations": iterations,
                                                             **params}}}
    return launch(spec, store=store).id


def _train_data(store: Store, run_id: str) -> ArrayDataset:
    from kdlab.runs.experiment import load_splits
    from kdlab.runs.spec import load_spec

    return load_splits(load_spec(store.get_run(run_id, refresh=False).spec)).train


class DistilledImagesPage(param.Parameterized):
    """Pick a condensation run; scrub its snapshots; nearest real neighbours and class means on demand."""

    run_id = param.String(default=None, allow_None=True)
    iteration = param.Integer(default=0)
    flips = param.Boolean(default=False, doc="show each image's horizontal flip (what FYI matches)")
    space = param.Selector(default="pixel", objects=list(SPACES))
    method = param.Selector(default="dm", objects=["dm", "datadam", "dc", "random", "herding"])
    ipc = param.Integer(default=1, bounds=(1, 50))
    iterations = param.Integer(default=100, bounds=(0, 20_000))

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.task: Task | None = None
        self.picker = pn.widgets.Select(name="condensation run", options={}, width=420,
                                        css_classes=["kdlab-distilled-run"])
        self.picker.link(self, value="run_id")
        self.slider = pn.widgets.DiscreteSlider(name="iteration", options=[0], value=0, width=420,
                                                css_classes=["kdlab-distilled-slider"])
        self.slider.link(self, value="iteration")
        self.view_controls = pn.Param(self.param, parameters=["flips", "space"], show_name=False,
                                      default_layout=pn.Row)
        self.launch_controls = pn.Param(self.param, parameters=["method", "ipc", "iterations"], show_name=False,
                                        default_layout=pn.Row)
        self.launch_button = pn.widgets.Button(name="Launch condensation", button_type="primary")
        self.launch_button.on_click(lambda _e: self.launch())
        self.button = pn.widgets.Button(name="Nearest neighbours", button_type="primary",
                                        css_classes=["kdlab-distilled-neighbours"])
        self.button.on_click(lambda _e: self.compute())
        self.progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.status = pn.pane.Markdown("", css_classes=["kdlab-distilled-status"])
        cfg = {"displaylogo": False}
        self.grid = pn.pane.Plotly(sizing_mode="stretch_width", height=500, config=cfg,
                                   css_classes=["kdlab-distilled-grid"])
        self.extra = [pn.pane.Plotly(sizing_mode="stretch_width", height=500, config=cfg, visible=False)
                      for _ in range(2)]
        self._snapshots: list[int] = []
        self.refresh_options()
        self._load_run()

    # -- data --------------------------------------------------------------------------------------
    def refresh_options(self) -> None:
        runs = [r for r in self.store.records() if r.spec.get("task") == "condense"]
        self.picker.options = {f"{r.name} · {r.id} ({r.status})": r.id for r in runs}
        if self.run_id is None and self.picker.options:
            self.picker.value = next(iter(self.picker.options.values()))

    def folder(self) -> Path | None:
        return self.store.run_dir(self.run_id) if self.run_id else None

    def current(self) -> SyntheticSet | None:
        """The synthetic set at the slider's iteration (the final set when there are no snapshots)."""
        folder = self.folder()
        if folder is None:
            return None
        if self.iteration in self._snapshots:
            return load_snapshot(folder, self.iteration)
        return load_synthetic(folder)

    # -- actions ----------------------------------------------------------------------------------
    @param.depends("run_id", watch=True)
    def _load_run(self) -> None:
        self._snapshots = []
        self._update_snapshots()
        if self._snapshots:
            self.slider.value = self._snapshots[-1]
        self._draw()

    def _update_snapshots(self) -> None:
        folder = self.folder()
        snaps = list_snapshots(folder) if folder else []
        if snaps != self._snapshots:
            follow = not self._snapshots or self.slider.value == self._snapshots[-1]
            self._snapshots = snaps
            self.slider.options = snaps or [0]
            if follow and snaps:
                self.slider.value = snaps[-1]

    @param.depends("iteration", "flips", watch=True)
    def _draw(self) -> None:
        from kdlab.viz.condense import class_grid

        syn = self.current()
        if syn is None:
            self.status.object = ("no condensation run yet: launch one below" if self.run_id is None
                                  else "no snapshot yet: the run is starting")
            self.grid.object = None
            return
        title = f"iteration {self.iteration}" if self.iteration in self._snapshots else "final set"
        self.grid.object = class_grid(syn.x, syn.y, syn.classes, flips=self.flips,
                                      title=f"synthetic images per class ({title})")
        self.status.object = f"{len(syn)} images, {syn.ipc} per class; {len(self._snapshots)} snapshots"

    def compute(self) -> Task | None:
        """Find nearest real neighbours of the shown set in the background (as the button)."""
        syn = self.current()
        if syn is None or self.run_id is None:
            self.status.object = "pick a condensation run first"
            return None
        if self.task is not None and not self.task.done:
            return self.task
        self._shown = syn
        self.task = submit(lambda progress: neighbours(progress, syn, _train_data(self.store, self.run_id),
                                                       space=self.space))
        show_queued(self.button, self.progress, self.status)
        return self.task

    def launch(self) -> str:
        """Launch a condensation run on mnist5k with the form's method, IPC and iterations."""
        run_id = launch_condensation(self.store, method=self.method, ipc=self.ipc, iterations=self.iterations)
        self.refresh_options()
        self.picker.value = run_id
        return run_id

    def tick(self) -> None:
        """Follow new snapshots of a running run and the neighbour task (the dashboard calls this)."""
        if self.run_id is not None:
            before = list(self._snapshots)
            self._update_snapshots()
            if self._snapshots != before:
                self._draw()
        poll(self.task, self.button, self.progress, self.status, self._show_neighbours)

    def _show_neighbours(self, found: Neighbours) -> None:
        for pane, fig in zip(self.extra, neighbour_figures(found, self._shown), strict=True):
            pane.object, pane.visible = fig, True
        self.status.object = "done"

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.picker, self.slider), self.view_controls, self.status, self.grid,
                         pn.Row(self.button, self.progress), *self.extra,
                         pn.pane.Markdown("### New condensation run (mnist5k, background)"),
                         pn.Row(self.launch_controls, self.launch_button),
                         sizing_mode="stretch_width", css_classes=["kdlab-distilled-images"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Distilled images", DistilledImagesPage, "distilled_images", order=60,
                        doc="Synthetic images of condensation runs, their evolution and their nearest real images.")


# ------------------------------------------------------------------------------------- notebook face

class DistilledImagesWidget(TaskWidget):
    """``DistilledImagesWidget(run_dir=...)`` or ``DistilledImagesWidget(synthetic, real=train)``: an iteration
    slider over snapshots, the per-class grid, and a button for nearest neighbours (in the background)."""

    title = "Nearest neighbours"

    def __init__(self, synthetic: SyntheticSet | None = None, real: ArrayDataset | None = None,
                 run_dir: str | Path | None = None, space: str = "pixel"):
        import ipywidgets as w

        if synthetic is None and run_dir is None:
            raise ConfigError("give a SyntheticSet or the run_dir of a condensation run")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.final = synthetic if synthetic is not None else load_synthetic(self.run_dir)
        self.real, self.space = real, space
        self.snapshots = list_snapshots(self.run_dir) if self.run_dir else []
        if self.final is None and not self.snapshots:
            raise ConfigError(f"{run_dir}: no synthetic set or snapshot there yet")
        super().__init__()
        opts = self.snapshots or [0]
        self.slider = w.SelectionSlider(options=opts, value=opts[-1], description="iteration")
        self.flips = w.Checkbox(value=False, description="show flips")
        self.grid_out = w.Output()
        self.slider.observe(lambda _c: self.draw(), names="value")
        self.flips.observe(lambda _c: self.draw(), names="value")
        self.widget = w.VBox([w.HBox([self.slider, self.flips]), self.grid_out, *self.widget.children])
        self._shown: SyntheticSet | None = None
        self.draw()

    def current(self) -> SyntheticSet:
        if self.run_dir is not None and self.slider.value in self.snapshots:
            return load_snapshot(self.run_dir, self.slider.value)
        assert self.final is not None
        return self.final

    def figure(self) -> Any:
        from kdlab.viz.condense import class_grid

        syn = self.current()
        return class_grid(syn.x, syn.y, syn.classes, flips=self.flips.value,
                          title=f"synthetic images per class (iteration {self.slider.value})")

    def draw(self) -> None:
        from IPython.display import display

        with self.grid_out:
            self.grid_out.clear_output(wait=True)
            display(self.figure())

    def submit(self) -> Task:
        """Nearest real neighbours of the shown set (``compute()`` or the button start it)."""
        if self.real is None:
            raise ConfigError("real: pass the real training data to search neighbours in")
        self._shown = self.current()
        return submit(neighbours, self._shown, self.real, space=self.space)

    def figures(self, result: Neighbours) -> list[Any]:
        assert self._shown is not None
        return neighbour_figures(result, self._shown)
