"""Representations: teacher-student CKA, agreement and embeddings of a run (or of any two models).

Plain calls: ``analyze(progress, teacher, student, data, ...)`` and ``analyze_run(progress, run_dir, ...)``
(which also saves the artifacts the report reads). Faces: ``RepresentationsPage`` (the dashboard page
**Representations**) and ``RepresentationsWidget`` (ipywidgets, for notebooks); both run the work through
``kdlab.ui.tasks.submit`` and show its progress, so neither the server nor the kernel blocks.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param

from kdlab.analysis.agreement import Agreement, model_agreement
from kdlab.analysis.cka import POOLS, cka_matrix, few_samples_warning
from kdlab.analysis.embeddings import METHODS, EmbeddingPair, embed_pair
from kdlab.distill.base import declared_layers
from kdlab.distill.taps import feature_shapes
from kdlab.report.representations import (
    AGREEMENT_FILE,
    CKA_FILE,
    EMBEDDING_FILE,
    artifacts_dir,
    cka_to_json,
    load_agreement,
    load_cka,
    load_embedding,
    load_epochs,
    write_json,
)
from kdlab.runs.store import Store
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import TaskWidget
from kdlab.ui.tasks import Task, poll, show_queued, submit

SPLITS = ("val", "test", "train")


def default_layers(model: Any) -> list[str]:
    """A zoo model's declared stages followed by its logits layer."""
    stages = declared_layers(model, "stages")
    return stages + [p for p in declared_layers(model, "logits") if p not in stages]


@dataclass
class Representations:
    """What the page shows: the CKA grid, the agreement, the embeddings and a sample-size warning."""

    cka: Any
    agreement: Agreement
    embeddings: EmbeddingPair
    warning: str | None = None
    class_names: list[str] = field(default_factory=list)

    def figures(self, color_by: str = "class") -> dict[str, Any]:
        from kdlab.viz.representations import agreement_panel, cka_heatmap, embedding_scatter

        e = self.embeddings
        return {"cka": cka_heatmap(self.cka, title=f"CKA teacher x student ({self.cka.attrs['n_samples']} samples, "
                                                   f"{self.cka.attrs['pool']})"),
                "agreement": agreement_panel(self.agreement),
                "embeddings": embedding_scatter(e.teacher, e.student, e.labels, color_by,
                                                self.agreement.agree[:len(e.labels)], self.class_names,
                                                title=f"{e.method.upper()} of {e.teacher_layer} / {e.student_layer}",
                                                method=e.method)}


def analyze(progress: Any, teacher: Any, student: Any, data: Any, teacher_layers: list[str] | None = None,
            student_layers: list[str] | None = None, pool: str = "flatten", batch_size: int = 250,
            max_samples: int = 1000, method: str = "pca", cache_dir: str | Path | None = None) -> Representations:
    """CKA grid (default layers: declared stages + logits), agreement and embeddings of the last stages."""
    progress = progress or (lambda *_a: None)
    t_layers = teacher_layers or default_layers(teacher)
    s_layers = student_layers or default_layers(student)
    dims = [int(np.prod(s)) for m, ls in ((teacher, t_layers), (student, s_layers))
            for s in feature_shapes(m, ls, data.in_shape).values()] if pool == "flatten" else [0]
    n = min(max_samples, len(data))
    total = -(-n // batch_size) + 2
    cka = cka_matrix(teacher, student, data, t_layers, s_layers, batch_size=batch_size, pool=pool,
                     max_samples=n, device="cpu",
                     progress=lambda d, _t, _m: progress(d, total, f"CKA batch {d}/{total - 2}"))
    progress(total - 2, total, "agreement")
    agree = model_agreement(teacher, student, data.subset(np.arange(n)))
    progress(total - 1, total, f"{method} embeddings")
    emb = embed_pair(teacher, student, data, declared_layers(teacher, "embedding")[0] if not teacher_layers
                     else t_layers[-1], declared_layers(student, "embedding")[0] if not student_layers
                     else s_layers[-1], method=method, max_samples=n, cache_dir=cache_dir)
    progress(total, total, "done")
    return Representations(cka, agree, emb, few_samples_warning(cka.attrs["n_samples"], max(dims)),
                           list(data.classes))


def run_models(folder: str | Path) -> tuple[Any, Any, Any]:
    """Teacher, student (weights of ``checkpoints/last.pt``) and data splits of a finished run folder."""
    from kdlab.distill.trainer import load_state
    from kdlab.errors import ConfigError
    from kdlab.models import create
    from kdlab.report.runs import load_run
    from kdlab.runs.experiment import load_splits
    from kdlab.runs.spec import load_spec

    folder = Path(folder)
    spec = load_spec(load_run(folder).spec)
    if spec.teacher is None:
        raise ConfigError(f"{folder}: the run has no teacher to compare its student with")
    splits = load_splits(spec)
    weights = load_state(folder / "checkpoints" / "last.pt")["model"]
    models = []
    for prefix, ms in (("teacher.", spec.teacher), ("student.", spec.student)):
        model = create(ms.name, splits.train.num_classes, splits.train.in_shape, **ms.params)
        model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        models.append(model.eval())
    return models[0], models[1], splits


def save_artifacts(folder: str | Path, rep: Representations) -> None:
    """Write the CKA grid, agreement and embeddings where the report's Representations section reads them."""
    out = artifacts_dir(folder)
    write_json(out / CKA_FILE, cka_to_json(rep.cka))
    write_json(out / AGREEMENT_FILE, {"summary": rep.agreement.summary() | {"top1": rep.agreement.top1,
                                                                            "kl": rep.agreement.kl},
                                      "per_class": rep.agreement.per_class.to_dict("records")})
    e = rep.embeddings
    np.savez(out / EMBEDDING_FILE, teacher=e.teacher, student=e.student, labels=e.labels,
             agree=rep.agreement.agree[:len(e.labels)], method=e.method, teacher_layer=e.teacher_layer,
             student_layer=e.student_layer)


def analyze_run(progress: Any, folder: str | Path, split: str = "val", **kwargs: Any) -> Representations:
    """``analyze`` a finished run's teacher and student on ``split``; saves the artifacts into its folder."""
    from kdlab.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {list(SPLITS)}")
    teacher, student, splits = run_models(folder)
    rep = analyze(progress, teacher, student, getattr(splits, split),
                  cache_dir=artifacts_dir(folder) / "embeddings", **kwargs)
    save_artifacts(folder, rep)
    return rep


class RepresentationsPage(FinishedRunChoice, param.Parameterized):
    """Pick a finished run, compute in the background, see CKA, agreement and embeddings."""

    run_id = param.String(default=None, allow_None=True)
    split = param.Selector(default="val", objects=list(SPLITS))
    pool = param.Selector(default="flatten", objects=list(POOLS))
    method = param.Selector(default="pca", objects=list(METHODS))
    color_by = param.Selector(default="class", objects=["class", "agreement"])
    max_samples = param.Integer(default=500, bounds=(16, 10_000))

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.task: Task | None = None
        self.result: Representations | None = None
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-repr-run"])
        self.picker.link(self, value="run_id")
        self.controls = pn.Param(self.param, parameters=["split", "pool", "method", "color_by", "max_samples"],
                                 show_name=False, default_layout=pn.Row)
        self.button = pn.widgets.Button(name="Compute", button_type="primary", css_classes=["kdlab-repr-compute"])
        self.button.on_click(lambda _e: self.compute())
        self.progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.status = pn.pane.Markdown("", css_classes=["kdlab-repr-status"])
        self.warning = pn.pane.Alert("", alert_type="warning", visible=False)
        cfg = {"displaylogo": False}
        self.heatmap = pn.pane.Plotly(sizing_mode="stretch_width", height=420, config=cfg,
                                      css_classes=["kdlab-repr-heatmap"])
        self.epochs = pn.pane.Plotly(sizing_mode="stretch_width", height=400, config=cfg, visible=False)
        self.agreement = pn.pane.Plotly(sizing_mode="stretch_width", height=420, config=cfg)
        self.embeddings = pn.pane.Plotly(sizing_mode="stretch_width", height=460, config=cfg)
        self.refresh_options()
        self._show_saved()

    @param.depends("run_id", watch=True)
    def _show_saved(self) -> None:
        """Show what was computed for this run before (its artifacts), if anything."""
        from kdlab.viz.representations import agreement_panel, cka_heatmap, cka_over_epochs, embedding_scatter

        folder = self.folder()
        if folder is None:
            self.status.object = "no finished run with a teacher yet: train one on the Runs page"
            return
        cka, agree, emb, epochs = load_cka(folder), load_agreement(folder), load_embedding(folder), load_epochs(folder)
        self.heatmap.object = cka_heatmap(cka, title="CKA teacher x student (saved)") if cka is not None else None
        self.agreement.object = agreement_panel(agree) if agree is not None else None
        self.embeddings.object = (embedding_scatter(emb["teacher"], emb["student"], emb["labels"], self.color_by,
                                                    emb["agree"], method=str(emb["method"]))
                                  if emb is not None else None)
        self.epochs.visible = epochs is not None and len(epochs) > 0
        if self.epochs.visible:
            self.epochs.object = cka_over_epochs(epochs)
        self.status.object = ("saved results shown; Compute to refresh" if cka is not None
                              else "press Compute to analyse this run")

    def compute(self) -> Task | None:
        """Analyse the picked run in the background (as clicking Compute)."""
        folder = self.folder()
        if folder is None:
            self.status.object = "pick a run first"
            return None
        if self.task is not None and not self.task.done:
            return self.task
        self.task = submit(analyze_run, folder, split=self.split, pool=self.pool, method=self.method,
                           max_samples=self.max_samples)
        show_queued(self.button, self.progress, self.status)
        return self.task

    def tick(self) -> None:
        """Show the task's progress; draw the figures once it is done (the dashboard calls this each second)."""
        poll(self.task, self.button, self.progress, self.status, self.show)

    @param.depends("color_by", watch=True)
    def _recolor(self) -> None:
        if self.result is not None:
            self.embeddings.object = self.result.figures(self.color_by)["embeddings"]

    def show(self, rep: Representations) -> None:
        self.result = rep
        figs = rep.figures(self.color_by)
        self.heatmap.object, self.agreement.object = figs["cka"], figs["agreement"]
        self.embeddings.object = figs["embeddings"]
        self.warning.object, self.warning.visible = html.escape(rep.warning or ""), bool(rep.warning)
        self.status.object = f"done: {rep.cka.attrs['n_samples']} samples"

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.picker, self.button, self.progress), self.controls, self.status, self.warning,
                         self.heatmap, self.epochs, self.agreement, self.embeddings, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Representations", RepresentationsPage, "representations", order=30,
                        doc="Teacher-student CKA, agreement and embeddings of a run.")


class RepresentationsWidget(TaskWidget):
    """ipywidgets face: ``RepresentationsWidget(teacher, student, data)`` or ``RepresentationsWidget(run_dir=...)``;
    ``compute()`` (or the button) runs in the background; figures appear when done (``wait()`` blocks)."""

    def __init__(self, teacher: Any = None, student: Any = None, data: Any = None, run_dir: str | Path | None = None,
                 split: str = "val", **kwargs: Any):
        if run_dir is None and (teacher is None or student is None or data is None):
            from kdlab.errors import ConfigError

            raise ConfigError("give teacher, student and data, or run_dir of a finished run")
        self.models, self.run_dir, self.split, self.kwargs = (teacher, student, data), run_dir, split, kwargs
        super().__init__()

    def submit(self) -> Task:
        if self.run_dir is not None:
            return submit(analyze_run, self.run_dir, split=self.split, **self.kwargs)
        return submit(analyze, *self.models, **self.kwargs)

    def figures(self, result: Representations) -> list[Any]:
        return list(result.figures().values())

    def done_message(self, result: Representations) -> str:
        return result.warning or "done"
