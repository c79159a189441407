"""Source selection page: pick a target and a label budget, rank the zoo in the background, see the
score matrix and weights, launch DistillNearest/DistillWeighted runs. ``SourceSelection`` is the one
component; ``panel()`` is the dashboard face, ``widget()`` the ipywidgets face for notebooks."""
from __future__ import annotations

import html
import threading
import time
from typing import Any

import panel as pn
import param

from kdlab.transfer import METRICS, SourceZoo, make_target, rank_sources, source_weights
from kdlab.ui.pages import register_component_page
from kdlab.ui.tasks import Task, submit


def rank_job(progress: Any, zoo: SourceZoo, target: str, labels_per_class: int, seed: int,
             params: dict[str, Any]) -> tuple[Any, Any]:
    """Background job: build the zoo (cached), make the target, rank every source (the science calls)."""
    zoo.build(progress=lambda i, n, m: progress(i, 2 * n, m))
    tgt = make_target(target, labels_per_class, seed, **params)
    return tgt, rank_sources(zoo, tgt.labelled, progress=lambda i, n, m: progress(n + i, 2 * n, m))


class SourceSelection(param.Parameterized):
    """Target + label budget -> ranked zoo -> launched runs."""

    target = param.String(default="digits", doc="registered dataset of the target task")
    size = param.Integer(default=28, bounds=(8, 64), doc="image side (digits: 28 to match the sources)")
    labels_per_class = param.Integer(default=10, bounds=(1, 100), doc="label budget per class")
    seed = param.Integer(default=0, bounds=(0, None))
    metric = param.Selector(default="linear_probe", objects=list(METRICS))
    temperature = param.Number(default=0.5, bounds=(0.01, 100.0))
    epochs = param.Integer(default=12, bounds=(1, 500), doc="student epochs of the launched runs")

    def __init__(self, zoo: SourceZoo | None = None, store: Any = None, **params: Any):
        super().__init__(**params)
        self.zoo = zoo if zoo is not None else SourceZoo()
        self.store = store
        self.task: Task | None = None
        self.result: tuple[Any, Any] | None = None
        self.handles: list[Any] = []
        self.finished = threading.Event()  # set once a ranking is done and drawn
        self._start_widget: Any = None  # the notebook face's start, once it exists
        self.status = pn.pane.Markdown("Pick a target and press **Rank sources**.", css_classes=["kdlab-ss-status"])
        self.progress = pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width")
        self.figures = pn.Column(sizing_mode="stretch_width")

    def rank(self) -> Task:
        """Start ranking in the background (returns the task at once)."""
        self.task = submit(rank_job, self.zoo, self.target, self.labels_per_class, self.seed,
                           {"size": self.size} if self.target == "digits" else {})
        self.progress.visible = True
        self.finished.clear()
        return self.task

    def tick(self) -> None:
        """Poll the ranking task; draw the figures when it is done."""
        if self.task is None:
            return
        p = self.task.progress
        self.progress.value = int(100 * p.fraction)
        self.status.object = f"Ranking: {html.escape(p.message)}" if p.message else "Ranking..."
        if self.task.done:
            task, self.task = self.task, None
            self.progress.visible = False
            error = task.error()
            if error is not None:
                self.status.object = f"Ranking failed: {type(error).__name__}: {html.escape(str(error))}"
            else:
                self.result = task.result()
                self.show()
            if self._start_widget is None:  # the notebook face sets it after drawing its own figures
                self.finished.set()

    def figures_of(self) -> dict[str, Any]:
        """The score matrix and the weights (by ``metric`` and ``temperature``) of the last ranking."""
        from kdlab.viz.transfer import score_matrix, weight_bars

        if self.result is None:
            return {}
        scores = self.result[1]
        weights = source_weights(scores, self.temperature, self.metric)
        return {"scores": score_matrix(scores),
                "weights": weight_bars(weights, f"Source weights ({self.metric}, T = {self.temperature:g})")}

    def show(self) -> None:
        """Draw the figures of the last ranking on the page."""
        self.figures.objects = [pn.pane.Plotly(f, sizing_mode="stretch_width", css_classes=[f"kdlab-ss-{k}"])
                                for k, f in self.figures_of().items()]
        scores = self.result[1]
        self.status.object = f"Ranked {len(scores)} sources in {scores.attrs.get('seconds', 0):.1f} s."

    def launch(self) -> list[Any]:
        """Launch DistillNearest and DistillWeighted in the background (needs a ranking)."""
        from kdlab.paths import cache_dir
        from kdlab.runs.background import launch
        from kdlab.transfer.harness import transfer_specs

        if self.result is None:
            self.status.object = "Rank the sources first."
            return []
        target, scores = self.result
        specs = transfer_specs(self.zoo, target, scores, str(cache_dir("source-selection")), self.metric,
                               self.temperature, epochs=self.epochs)
        self.handles = [launch(s, store=self.store) for s in specs.values()]
        self.status.object = "Launched: " + ", ".join(f"`{h.id}`" for h in self.handles)
        return self.handles

    def panel(self) -> pn.viewable.Viewable:
        rank_btn = pn.widgets.Button(name="Rank sources", button_type="primary", css_classes=["kdlab-ss-rank"])
        rank_btn.on_click(lambda _e: self.rank())
        go_btn = pn.widgets.Button(name="Launch DistillNearest + DistillWeighted")
        go_btn.on_click(lambda _e: self.launch())
        form = pn.Param(self.param, parameters=["target", "size", "labels_per_class", "seed", "metric",
                                                "temperature", "epochs"], show_name=False)
        self.param.watch(lambda _e: self.result is not None and self.show(), ["metric", "temperature"])
        return pn.Column(pn.pane.Markdown("### Source selection"), pn.Row(form, pn.Column(rank_btn, go_btn)),
                         self.progress, self.status, self.figures, sizing_mode="stretch_width",
                         css_classes=["kdlab-source-selection"])

    def widget(self) -> Any:
        """The ipywidgets face for notebooks (the same component): a button, a progress bar and label, and the
        figures once ranked; the ranking runs in the background, so the kernel stays free (``wait()`` blocks)."""
        import ipywidgets as w

        button = w.Button(description="Rank sources", button_style="primary")
        bar, label, out = w.FloatProgress(value=0.0, min=0.0, max=1.0), w.HTML(""), w.Output()

        def follow() -> None:  # in a thread: mirror the task's progress, then draw the figures
            while self.task is not None and not self.task.done:
                bar.value, label.value = self.task.progress.fraction, html.escape(self.task.progress.message)
                time.sleep(0.2)
            self.tick()
            bar.value, label.value = 1.0, html.escape(self.status.object.replace("`", ""))
            if self.result is not None:
                from IPython.display import display

                with out:
                    out.clear_output()
                    for fig in self.figures_of().values():
                        display(fig)
            button.disabled = False
            self.finished.set()

        def start(_b: Any = None) -> None:
            button.disabled = True
            self.rank()
            threading.Thread(target=follow, daemon=True, name="kdlab-source-selection").start()

        button.on_click(start)
        self._start_widget = start
        return w.VBox([w.HBox([button, bar, label]), out])

    def wait(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Block until the ranking is done and shown (for scripts and tests); returns ``(target, scores)``."""
        if self.task is None and self.result is None:
            (self._start_widget or self.rank)()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished.wait(0.1):
            if self._start_widget is None:
                self.tick()  # no widget thread follows the task: poll it here
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"ranking still running after {timeout} s")
        if self.result is None:
            raise RuntimeError(f"ranking failed: {self.status.object}")
        return self.result


register_component_page("Source selection", SourceSelection, "source_selection", order=40,
                        doc="Rank the source zoo for a target with a label budget and launch "
                            "DistillNearest/DistillWeighted.")
