"""``JobPanel``: the Panel face of one job kind on a dashboard page (the notebook's ``TaskWidget`` twin).

Its form is built from the kind's declared ``Param``s (one declaration for the spec, the CLI and both UIs); its
button submits the job to the store; each tick mirrors the job's progress from the store and, once the job has
ended, draws the figures of its saved result. It holds nothing the store does not have: a new browser session
(or a restarted server) finds the newest job of its kind with ``follow()`` and shows its live progress or result.
Figures appear only once there is something to draw; before that the status line says what to do.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.registry import Param
from kdlab.runs.background import RunHandle
from kdlab.runs.job import get_job
from kdlab.runs.store import Store
from kdlab.ui.tasks import latest, poll, show_queued, submit

PLOT_HEIGHT = 420


def param_for(p: Param) -> param.Parameter:
    """A ``param`` parameter (what ``pn.Param`` draws as a widget) for one declared ``Param``."""
    if p.choices:
        return param.Selector(default=p.default, objects=list(p.choices), doc=p.doc)
    if p.type is bool:
        return param.Boolean(default=p.default, doc=p.doc)
    if p.type is int:
        return param.Integer(default=p.default, bounds=(p.low, p.high), allow_None=p.default is None, doc=p.doc)
    if p.type is float:
        return param.Number(default=p.default, bounds=(p.low, p.high), allow_None=p.default is None, doc=p.doc)
    if p.type is list:
        return param.List(default=list(p.default or []), doc=p.doc)
    if p.type is dict:  # e.g. a method's parameters (drawn as a literal input: {"beta": 0.5})
        return param.Dict(default=dict(p.default or {}), doc=p.doc)
    return param.String(default=p.default, allow_None=p.default is None, doc=p.doc)


def params_form(kind: str, exclude: Sequence[str] = ()) -> param.Parameterized:
    """A ``Parameterized`` holding kind ``kind``'s declared parameters (but ``exclude``), at their defaults."""
    declared = {k: param_for(p) for k, p in get_job(kind).params.items() if k not in exclude}
    cls = type(f"{kind.title().replace('_', '')}Parameters", (param.Parameterized,), declared)
    return cls(name=kind)


class JobPanel:
    """Form, button, progress and figures of job kind ``kind``. ``fixed()`` gives parameters the page sets
    (e.g. ``{"run": picked run}``); ``draw(result)`` gives ``{key: plotly figure or DataFrame}``; ``css`` prefixes
    the CSS classes (``kdlab-<css>-compute``, ``-status``, ``-<key>``) that tests and styles use; ``message(result)``
    is the status line once drawn."""

    def __init__(self, store: Store, kind: str, draw: Callable[[Any], Mapping[str, Any]], css: str,
                 fixed: Callable[[], dict[str, Any]] | None = None, button: str = "Compute",
                 exclude: Sequence[str] = ("run",), empty: str = "press Compute to start",
                 heights: Mapping[str, int] | None = None, message: Callable[[Any], str] | None = None):
        self.store, self.kind, self.draw, self.css = store, kind, draw, css
        self.message = message or (lambda _result: "done")
        self.fixed = fixed or (lambda: {})
        self.empty, self.heights = empty, dict(heights or {})
        self.form = params_form(kind, exclude)
        form = pn.Param(self.form.param, show_name=False, parameters=[k for k in self.form.param if k != "name"],
                        widgets={k: {"width": 200} for k in self.form.param if k != "name"})
        self.controls = pn.FlexBox(*form.layout.objects, sizing_mode="stretch_width")  # wraps at any width
        self.task: RunHandle | None = None
        self.result: Any = None
        self.button = pn.widgets.Button(name=button, button_type="primary", css_classes=[f"kdlab-{css}-compute"])
        self.button.on_click(lambda _e: self.compute())
        self.progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.status = pn.pane.Markdown(empty, css_classes=[f"kdlab-{css}-status"])
        self.figures = pn.Column(sizing_mode="stretch_width")
        self.panes: dict[str, Any] = {}

    @property
    def busy(self) -> bool:
        """Whether a job of this panel is yet to be drawn (submitted or followed, not shown yet)."""
        return self.task is not None and self.button.disabled

    def params(self) -> dict[str, Any]:
        """The job's parameters as the form and the page set them."""
        values = {k: getattr(self.form, k) for k in self.form.param if k != "name"}
        return {**values, **self.fixed()}

    def compute(self) -> RunHandle | None:
        """Submit the job (as the button does); returns its ``RunHandle``, or None when the page lacks a choice."""
        if self.task is not None and not self.task.done:
            return self.task
        try:
            self.task = submit(self.store, self.kind, **self.params())
        except Exception as e:  # a bad form value or a missing run: said on the page, nothing launched
            self.status.object = f"cannot start: {html.escape(str(e))}"
            return None
        self.clear()  # what is shown is always the result of ``self.task`` (or nothing yet)
        show_queued(self.button, self.progress, self.status)
        return self.task

    def follow(self, of: str | None = None) -> RunHandle | None:
        """Show the newest job of this kind (analysing run ``of``): its live progress, or its result."""
        self.task = latest(self.store, self.kind, of=of)
        self.clear()
        if self.task is None:
            self.button.disabled, self.progress.visible = False, False
            self.status.object = self.empty
            return None
        self._form_from(self.task)
        if self.task.done:
            self.button.disabled = True  # let poll draw the result (or say why it failed) once
        else:
            show_queued(self.button, self.progress, self.status)
        self.tick()
        return self.task

    def _form_from(self, task: RunHandle) -> None:
        """Set the form to the parameters ``task`` runs with, so that it says what the figures show."""
        saved = task.record.spec.get("params") or {}
        values = {k: v for k, v in saved.items() if k in self.form.param and k != "name"}
        try:
            self.form.param.update(**values)
        except (ValueError, TypeError):  # a job of an older declaration: the form keeps its values
            pass

    def tick(self) -> None:
        """Mirror the job from the store; draw its result once it has ended (the dashboard calls this)."""
        poll(self.task, self.button, self.progress, self.status, self.show)

    def clear(self) -> None:
        self.result = None
        for pane in self.panes.values():
            pane.visible = False

    def show(self, result: Any) -> None:
        """Draw ``result`` (the kind's ``read``) in one pane per figure or table."""
        self.result = result
        drawn = dict(self.draw(result)) if result is not None else {}
        for key, obj in drawn.items():
            pane = self.panes.get(key)
            if pane is None:
                pane = self.panes[key] = self._pane(key, obj)
                self.figures.append(pane)
            if isinstance(obj, pd.DataFrame):
                pane.value = obj
            else:
                pane.object, pane.height = obj, self._height(key, obj)
            pane.visible = True
        for key, pane in self.panes.items():
            pane.visible = key in drawn
        task = self.task
        when = f" (job {task.id})" if task is not None else ""
        said = html.escape(self.message(result)) if drawn else "the job left nothing to show"
        self.status.object = said + when

    def _pane(self, key: str, obj: Any) -> Any:
        css = [f"kdlab-{self.css}-{key}"]
        if isinstance(obj, pd.DataFrame):
            return pn.widgets.Tabulator(obj, show_index=False, disabled=True, sizing_mode="stretch_width",
                                        css_classes=css)
        return pn.pane.Plotly(obj, sizing_mode="stretch_width", height=self._height(key, obj),
                              config={"displaylogo": False}, css_classes=css)

    def _height(self, key: str, fig: Any) -> int:
        """The pane height of figure ``key``: the page's choice, else the height the figure asks for."""
        return int(self.heights.get(key) or getattr(fig.layout, "height", None) or PLOT_HEIGHT)

    def panel(self, *head: Any) -> pn.viewable.Viewable:
        """The panel's face: ``head`` (e.g. a run picker) and the button, the form, the status, the figures."""
        return pn.Column(pn.FlexBox(*head, self.button, self.progress, sizing_mode="stretch_width"), self.controls,
                         self.status, self.figures, sizing_mode="stretch_width")
