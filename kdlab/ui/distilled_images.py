"""Distilled images: look at a condensation run's synthetic set, scrub through its snapshots, find each
synthetic image's nearest real neighbours (pixel or feature space), compare with the class means and with other
methods' sets side by side per class; and graph-classification sets distilled by Mirage, their computation trees.

Plain calls: ``launch_condensation(...)``, ``compare_methods(store, runs)``, ``mirage_figures(result)``. Faces:
``DistilledImagesPage`` (the dashboard page **Distilled images**, with an iteration slider) and
``DistilledImagesWidget`` / ``MirageWidget`` (ipywidgets, for notebooks). Snapshots are read from the run folder as
the run writes them; neighbour searches and Mirage are jobs in the store (``kdlab.jobs.neighbours``,
``kdlab.jobs.graph_condense``), so neither the server nor the kernel computes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import panel as pn
import param

from kdlab.condense import METHODS, SyntheticSet
from kdlab.errors import ConfigError
from kdlab.jobs.condense import list_snapshots, load_snapshot, load_synthetic
from kdlab.runs.store import Store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import register_component_page
from kdlab.ui.task_widget import TaskWidget, show


def launch_condensation(store: Store, data: str = "mnist5k", method: str = "dm", ipc: int = 1,
                        iterations: int = 100, seed: int = 0, cross_architecture: bool = False, **params: Any) -> str:
    """Start a condensation run in the background (as the page's Launch button); returns its id.
    ``cross_architecture``: evaluate the set with ConvNet, MLP, ResNet-8 and a tiny ViT (else the ConvNet)."""
    from kdlab.condense import CROSS_ARCHITECTURES
    from kdlab.runs import launch

    evaluation = {"models": list(CROSS_ARCHITECTURES)} if cross_architecture else {}
    spec = {"name": f"{method}-ipc{ipc}-{data}", "task": "condense", "seed": seed, "device": "cpu",
            "data": {"name": data}, "condense": {"params": {"method": method, "ipc": ipc, "iterations": iterations,
                                                             **params}, "evaluation": evaluation}}
    return launch(spec, store=store).id


def method_sets(store: Store, run_ids: list[str]) -> dict[str, SyntheticSet]:
    """The final synthetic sets of condensation runs, keyed '<method> IPC <k>' (with the run id's last 6 characters
    when two runs share that; runs without a set are left out): what the page's "compare with" shows side by side."""
    sets = {rid: syn for rid in run_ids if (syn := load_synthetic(store.run_dir(store.resolve(rid)))) is not None}
    labels = {rid: f"{syn.meta.get('method', '?')} IPC {syn.ipc}" for rid, syn in sets.items()}
    twice = {lab for lab in labels.values() if list(labels.values()).count(lab) > 1}
    return {(f"{lab} ({rid[-6:]})" if lab in twice else lab): sets[rid] for rid, lab in labels.items()}


def compare_methods(store: Store, run_ids: list[str], per_class: int = 4) -> Any:
    """The per-class side-by-side figure of condensation runs' final sets (the page's comparison, as a call)."""
    from kdlab.viz.condense import method_comparison

    sets = method_sets(store, run_ids)
    if not sets:
        raise ConfigError(f"runs {run_ids}: none has a final synthetic set yet")
    first = next(iter(sets.values()))
    scale = max(2, -(-32 // first.in_shape[1]))  # small images (8x8 digits) drawn at least 32 pixels high
    return method_comparison({k: (v.x, v.y) for k, v in sets.items()}, first.classes, per_class=per_class,
                             scale=scale)


def trajectory_figures(store: Store, run_id: str) -> dict[str, Any]:
    """The trajectory-matching figures of a condensation run ({} for other methods): the expert's and the
    synthetic-trained student's paths (PCA), the student's distance to the expert per epoch, and the normalised
    matching distance with the learned synthetic learning rate over the iterations (from the store's rows)."""
    from kdlab.viz.trajectories import distance_to_expert, matching_distance, trajectory_paths

    syn = load_synthetic(store.run_dir(store.resolve(run_id)))
    if syn is None or "expert_path_2d" not in syn.extras:
        return {}
    out = {"paths": trajectory_paths(syn.extras["expert_path_2d"], syn.extras["student_path_2d"]),
           "distance": distance_to_expert(syn.extras["distance_to_expert"])}
    rows = store.metrics(run_id, keys=["condense/loss", "condense/syn_lr"])
    wide = rows.pivot_table(index="step", columns="key", values="value", aggfunc="last") if len(rows) else None
    if wide is not None and "condense/loss" in wide:
        wide = wide.dropna(subset=["condense/loss"])
        out["matching"] = matching_distance(wide.index, wide["condense/loss"], wide.get("condense/syn_lr"))
    return out


def mirage_figures(result: Any) -> dict[str, Any]:
    """The figures of a ``graph_condense`` result: the most frequent computation trees per class and the accuracy
    of GCN/GIN trained on the full graphs vs on the distilled set."""
    from kdlab.viz.computation_trees import computation_trees, mirage_accuracy

    out = {"trees": computation_trees(result.mirage_set)}
    if result.table is not None and len(result.table):
        out["accuracy"] = mirage_accuracy(result.table)
    return out


def _mirage_message(result: Any) -> str:
    s = result.summary
    if not s:
        return "distilled"
    return (f"{s.get('tree_sets', 0):.0f} tree-sets of {s.get('trees', 0):.0f} trees; compression "
            f"{s.get('compression', 0):.1f}x in bytes; the kept trees cover {100 * s.get('coverage_test', 0):.0f}% "
            f"of the test graphs' nodes")


class DistilledImagesPage(param.Parameterized):
    """Pick a condensation run; scrub its snapshots; nearest real neighbours and class means as a job."""

    run_id = param.String(default=None, allow_None=True)
    iteration = param.Integer(default=0)
    flips = param.Boolean(default=False, doc="show each image's horizontal flip (what FYI matches)")
    method = param.Selector(default="dm", objects=list(METHODS))
    compare = param.ListSelector(default=[], objects=[], doc="other condensation runs shown side by side per class")
    ipc = param.Integer(default=1, bounds=(1, 50))
    iterations = param.Integer(default=100, bounds=(0, 20_000))
    cross_architecture = param.Boolean(default=False, doc="evaluate with ConvNet, MLP, ResNet-8 and a tiny ViT")

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.picker = pn.widgets.Select(name="condensation run", options={}, width=420,
                                        css_classes=["kdlab-distilled-run"])
        self.picker.link(self, value="run_id")
        self.slider = pn.widgets.DiscreteSlider(name="iteration", options=[0], value=0, width=420,
                                                css_classes=["kdlab-distilled-slider"])
        self.slider.link(self, value="iteration")
        self.view_controls = pn.Param(self.param, parameters=["flips"], show_name=False, default_layout=pn.Row)
        self.launch_controls = pn.Param(self.param, parameters=["method", "ipc", "iterations",
                                                                       "cross_architecture"], show_name=False,
                                        default_layout=pn.Row)
        self.compare_picker = pn.widgets.MultiChoice(name="compare with (same data)", options={}, width=640,
                                                     css_classes=["kdlab-distilled-compare"])
        self.compare_picker.link(self, value="compare")
        self.trajectories = pn.Column(sizing_mode="stretch_width", css_classes=["kdlab-distilled-trajectories"])
        self.compare_status = pn.pane.Markdown("", css_classes=["kdlab-distilled-compare-status"])
        self.comparison = pn.pane.Plotly(sizing_mode="stretch_width", height=500, config={"displaylogo": False},
                                         visible=False, css_classes=["kdlab-distilled-comparison"])
        self.launch_button = pn.widgets.Button(name="Launch condensation", button_type="primary")
        self.launch_button.on_click(lambda _e: self.launch())
        self.job = JobPanel(store, "neighbours", lambda n: n.figures(), "distilled", button="Nearest neighbours",
                            fixed=lambda: {"run": self.run_id, "iteration": self._shown_iteration()},
                            exclude=("run", "iteration"), empty="press Nearest neighbours to search the real images",
                            heights={"neighbours": 500, "means": 500})
        self.graphs = JobPanel(store, "graph_condense", mirage_figures, "mirage", button="Distil graphs (Mirage)",
                               exclude=(), empty="graph classification: press Distil graphs to run Mirage",
                               heights={"accuracy": 340}, message=_mirage_message)
        self.status = pn.pane.Markdown("", css_classes=["kdlab-distilled-view"])
        self.grid = pn.pane.Plotly(sizing_mode="stretch_width", height=500, config={"displaylogo": False},
                                   visible=False, css_classes=["kdlab-distilled-grid"])
        self._snapshots: list[int] = []
        self._trajectories_of: str | None = None
        self._launched: str | None = None  # the run Launch started, until its first snapshot is drawn
        self.refresh_options()
        self._load_run()
        self._draw_trajectories()
        self.graphs.follow()

    # -- data --------------------------------------------------------------------------------------
    def refresh_options(self) -> None:
        runs = self.store.jobs("condense")
        self.picker.options = {f"{r.name} · {r.id} ({r.status})": r.id for r in runs}
        done = {f"{r.name} · {r.id}": r.id for r in runs if r.status == "completed"}
        self.param.compare.objects = list(done.values())
        self.compare_picker.options = done
        if self.run_id is None and self.picker.options:
            self.picker.value = next(iter(self.picker.options.values()))

    def folder(self) -> Path | None:
        return self.store.run_dir(self.run_id) if self.run_id else None

    def _shown_iteration(self) -> int:
        return self.iteration if self.iteration in self._snapshots else -1

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
        if self.run_id is None:
            self.job.button.disabled = True
            self.job.status.object = "the neighbour search needs a condensation run"
        else:
            self.job.follow(of=self.run_id)

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
        self.grid.visible = syn is not None
        if syn is None:
            self.status.object = ("no condensation run yet: launch one below" if self.run_id is None
                                  else "no snapshot yet: the run is starting")
            self.grid.object = None
            return
        title = f"iteration {self.iteration}" if self.iteration in self._snapshots else "final set"
        self.grid.object = class_grid(syn.x, syn.y, syn.classes, flips=self.flips,
                                      title=f"synthetic images per class ({title})")
        self.status.object = f"{len(syn)} images, {syn.ipc} per class; {len(self._snapshots)} snapshots"

    @param.depends("run_id", watch=True)
    def _draw_trajectories(self) -> None:
        figs = trajectory_figures(self.store, self.run_id) if self.run_id else {}
        done = self.run_id is not None and self.store.get_run(self.run_id).status == "completed"
        self._trajectories_of = self.run_id if done else None  # drawn from the final set: not again
        self.trajectories.objects = [pn.pane.Plotly(f, sizing_mode="stretch_width", height=f.layout.height or 360,
                                                    config={"displaylogo": False},
                                                    css_classes=[f"kdlab-distilled-trajectory-{k}"])
                                     for k, f in figs.items()]

    @param.depends("run_id", "compare", watch=True)
    def _draw_comparison(self) -> None:
        ids = ([self.run_id] if self.run_id else []) + [r for r in self.compare if r != self.run_id]
        sets = method_sets(self.store, ids) if len(ids) > 1 else {}
        shapes = {s.x.shape[1:] for s in sets.values()}
        self.comparison.visible = len(sets) > 1 and len(shapes) == 1
        self.compare_status.object = ("the compared runs' images differ in shape (other data): pick runs of the same "
                                      "data" if len(shapes) > 1 else "")
        if self.comparison.visible:
            self.comparison.object = compare_methods(self.store, ids)

    def compute(self) -> Any:
        """Search the nearest real neighbours of the shown set in a background job (as the button)."""
        if self.current() is None:
            self.job.status.object = "pick a condensation run with a synthetic set first"
            return None
        return self.job.compute()

    @property
    def busy(self) -> bool:
        """Waiting on a job, or on the first snapshot of the run it launched (the dashboard then polls it every
        ``BUSY_POLL_MS``)."""
        return self.job.busy or self.graphs.busy or (self._launched is not None and self._launched == self.run_id
                                                     and not self._snapshots)

    def launch(self) -> str:
        """Launch a condensation run on mnist5k with the form's method, IPC and iterations."""
        run_id = launch_condensation(self.store, method=self.method, ipc=self.ipc, iterations=self.iterations,
                                     cross_architecture=self.cross_architecture)
        self._launched = run_id
        self.refresh_options()
        self.picker.value = run_id
        return run_id

    def tick(self) -> None:
        """Follow new snapshots of a running run and the neighbours job (the dashboard calls this)."""
        if self.run_id is not None:
            before = list(self._snapshots)
            self._update_snapshots()
            if self._snapshots != before:
                self._draw()
            if self._trajectories_of != self.run_id and self.store.get_run(self.run_id).status == "completed":
                self._draw_trajectories()  # the run's final set has just been written
        self.job.tick()
        self.graphs.tick()

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.picker, self.slider), self.view_controls, self.status, self.grid,
                         self.trajectories, self.compare_picker, self.compare_status, self.comparison,
                         self.job.panel(),
                         pn.pane.Markdown("### New condensation run (mnist5k, background)"),
                         pn.Row(self.launch_controls, self.launch_button),
                         pn.pane.Markdown("### Graph classification sets: Mirage's computation trees"),
                         self.graphs.panel(),
                         sizing_mode="stretch_width", css_classes=["kdlab-distilled-images"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Distilled images", DistilledImagesPage, "distilled_images", order=60,
                        doc="Synthetic images of condensation runs, their evolution and their nearest real images.")


# ------------------------------------------------------------------------------------- notebook face

class DistilledImagesWidget(TaskWidget):
    """``DistilledImagesWidget(run=condense_run_id, space="pixel")``: an iteration slider over the run's snapshots,
    the per-class grid, and a button that searches the nearest real neighbours in a background job."""

    kind = "neighbours"
    title = "Nearest neighbours"

    def __init__(self, run: str, store: Store | str | None = None, **params: Any):
        import ipywidgets as w

        super().__init__(store, run=run, **params)
        self.run_dir = self.store.run_dir(self.store.resolve(run))
        self.final = load_synthetic(self.run_dir)
        self.snapshots = list_snapshots(self.run_dir)
        if self.final is None and not self.snapshots:
            raise ConfigError(f"run {run}: no synthetic set or snapshot there yet")
        opts = self.snapshots or [0]
        self.slider = w.SelectionSlider(options=opts, value=opts[-1], description="iteration")
        self.flips = w.Checkbox(value=False, description="show flips")
        self.grid_out = w.Output()
        self.slider.observe(lambda _c: self.draw(), names="value")
        self.flips.observe(lambda _c: self.draw(), names="value")
        self.widget = w.VBox([w.HBox([self.slider, self.flips]), self.grid_out, *self.widget.children])
        self.draw()

    def current(self) -> SyntheticSet:
        if self.slider.value in self.snapshots:
            return load_snapshot(self.run_dir, self.slider.value)
        assert self.final is not None
        return self.final

    def figure(self) -> Any:
        from kdlab.viz.condense import class_grid

        syn = self.current()
        return class_grid(syn.x, syn.y, syn.classes, flips=self.flips.value,
                          title=f"synthetic images per class (iteration {self.slider.value})")

    def draw(self) -> None:
        show(self.grid_out, [self.figure()])

    def compute(self) -> Any:
        """Nearest real neighbours of the set at the slider's iteration (a background job)."""
        self.params["iteration"] = self.slider.value if self.slider.value in self.snapshots else -1
        return super().compute()

    def figures(self, result: Any) -> list[Any]:
        return list(result.figures().values())


class MirageWidget(TaskWidget):
    """``MirageWidget(dataset="motifs", layers=2, ...)``: a ``graph_condense`` job (Mirage) run in the background,
    then its computation trees per class and GCN/GIN accuracy, full graphs vs the distilled set."""

    kind = "graph_condense"
    title = "Distil graphs (Mirage)"

    def figures(self, result: Any) -> list[Any]:
        return list(mirage_figures(result).values())

    def done_message(self, result: Any) -> str:
        return _mirage_message(result)
