"""Source selection: pick a target and a label budget, rank the zoo in a background ``transfer_rank`` job, see
the score matrix and weights, launch DistillNearest/DistillWeighted runs. ``SourceSelection`` is the one
component; ``panel()`` is its face on the Shift page (``kdlab.ui.shift``), ``widget()`` the ipywidgets face for
notebooks."""
from __future__ import annotations

from typing import Any

import panel as pn
import param

from kdlab.errors import unknown
from kdlab.jobs.transfer_rank import target_of, zoo_of
from kdlab.runs.store import Store, open_store
from kdlab.transfer import source_weights
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.task_widget import TaskWidget


def selection_figures(saved: dict[str, Any], metric: str, temperature: float) -> dict[str, Any]:
    """The score matrix and the weights (by ``metric`` and ``temperature``) of a saved ranking."""
    from kdlab.viz.transfer import score_matrix, weight_bars

    scores = saved["scores"]
    weights = source_weights(scores, temperature, metric)
    return {"scores": score_matrix(scores),
            "weights": weight_bars(weights, f"Source weights ({metric}, T = {temperature:g})")}


class SourceSelection(param.Parameterized):
    """Target + label budget -> ranked zoo (a job) -> launched runs."""

    epochs = param.Integer(default=12, bounds=(1, 500), doc="student epochs of the launched runs")

    def __init__(self, store: Store | None = None, epochs: int = 12, **job_params: Any):
        super().__init__(epochs=epochs)
        self.store = store if store is not None else open_store()
        self.job = JobPanel(self.store, "transfer_rank", self._draw, "ss", button="Rank sources", exclude=(),
                            empty="Pick a target and press **Rank sources**.",
                            message=lambda saved: f"Ranked {len(saved['scores'])} sources.")
        self.job.form.param.watch(lambda _e: self.job.result is not None and self.job.show(self.job.result),
                                  ["metric", "temperature"])
        self.handles: list[Any] = []
        self.job.follow()  # the newest ranking, its parameters in the form; those given here take precedence
        for k, v in job_params.items():
            if k not in self.job.form.param or k == "name":
                raise unknown("transfer_rank parameter", k, [p for p in self.job.form.param if p != "name"],
                              where="SourceSelection")
            setattr(self.job.form, k, v)

    def follow(self) -> Any:
        """Show the newest ranking in the store (e.g. the one the notebook widget just made), for ``launch``."""
        return self.job.follow()

    @property
    def status(self) -> Any:
        return self.job.status

    @property
    def result(self) -> dict[str, Any] | None:
        return self.job.result

    def _draw(self, saved: dict[str, Any]) -> dict[str, Any]:
        return selection_figures(saved, self.job.form.metric, self.job.form.temperature)

    def rank(self) -> Any:
        """Start ranking in a background job (returns its ``RunHandle`` at once)."""
        return self.job.compute()

    def tick(self) -> None:
        self.job.tick()

    def ranked_params(self) -> dict[str, Any]:
        """The parameters of the ranking shown (its job's: the form may differ, e.g. in a new session), with the
        form's metric and temperature (they only weight the ranked sources)."""
        task = self.job.task
        p = dict(task.record.spec["params"]) if task is not None else self.job.params()
        return {**p, "metric": self.job.form.metric, "temperature": self.job.form.temperature}

    def launch(self) -> list[Any]:
        """Launch DistillNearest and DistillWeighted in the background (needs a finished ranking)."""
        from kdlab.paths import cache_dir
        from kdlab.runs.background import launch
        from kdlab.transfer.harness import transfer_specs

        if self.job.result is None:
            self.job.status.object = "Rank the sources first."
            return []
        p = self.ranked_params()
        specs = transfer_specs(zoo_of(p), target_of(p), self.job.result["scores"], str(cache_dir("source-selection")),
                               p["metric"], p["temperature"], epochs=self.epochs)
        self.handles = [launch(s, store=self.store) for s in specs.values()]
        self.job.status.object = "Launched: " + ", ".join(f"`{h.id}`" for h in self.handles)
        return self.handles

    def panel(self) -> pn.viewable.Viewable:
        go_btn = pn.widgets.Button(name="Launch DistillNearest + DistillWeighted", css_classes=["kdlab-ss-launch"])
        go_btn.on_click(lambda _e: self.launch())
        return pn.Column(pn.pane.Markdown("### Source selection"), self.job.panel(go_btn),
                         pn.Param(self.param, parameters=["epochs"], show_name=False),
                         sizing_mode="stretch_width", css_classes=["kdlab-source-selection"])

    def widget(self, **params: Any) -> SourceSelectionWidget:
        """The ipywidgets face for notebooks: the same job kind with the same parameters as the page's form."""
        return SourceSelectionWidget(self.store, **{**self.job.params(), **params})


class SourceSelectionWidget(TaskWidget):
    """``SourceSelectionWidget(store, target="digits", labels_per_class=10, ...)``: the zoo ranked in a background
    job; the score matrix and the weights appear when it is done (``wait()`` blocks until then)."""

    kind = "transfer_rank"
    title = "Rank sources"

    def figures(self, result: dict[str, Any]) -> list[Any]:
        return list(selection_figures(result, self.params.get("metric", "linear_probe"),
                                      self.params.get("temperature", 0.5)).values())

    def done_message(self, result: dict[str, Any]) -> str:
        return f"Ranked {len(result['scores'])} sources."
