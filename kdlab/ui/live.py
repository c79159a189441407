"""Live curves of a run: incremental polling of the store, drawn by ``kdlab.viz.training_curves``.

``CurvePoller`` is the shared part (no toolkit): it keeps the rows seen so far and asks the store only for
rows with a larger step (``store.metrics(since_step=...)``); a new ``attempt`` (resume) reloads. Once a run
has epoch rows it reads only those: the curves draw epoch rows when there are any (``as_history``), so a
long run's per-step rows are never read for display.
``LiveCurves`` (Panel, polled by the dashboard's periodic callback) and ``RunMonitor`` (ipywidgets, polled
by a coroutine on the kernel's loop) are its two faces; both offer cancel/resume as methods and buttons, each
button shown only while its action applies (``can_cancel``/``can_resume``). Until a run has metrics, both say
what to do or wait for (``empty_message``) instead of drawing empty axes.
"""
from __future__ import annotations

import asyncio
import html
import re
import threading
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.runs.background import RunHandle
from kdlab.runs.store import ACTIVE, TERMINAL, Store
from kdlab.ui.task_widget import kernel_loop

#: statuses a run can be resumed from (a completed run is launched anew, an active one is still going)
RESUMABLE = ("failed", "cancelled", "interrupted")


def can_cancel(status: str | None) -> bool:
    """Whether a run in ``status`` can be cancelled (queued or running)."""
    return status in ACTIVE


def can_resume(status: str | None) -> bool:
    """Whether a run in ``status`` can be resumed from its last checkpoint (failed, cancelled, interrupted)."""
    return status in RESUMABLE


def empty_message(status: str | None) -> str:
    """What a run's curves area says while it has no metrics (``None``: no run to show)."""
    if status is None:
        return ("No run to follow yet: open **Launch a run** above to start one, or click a run in the table. "
                "Its curves appear here as it trains.")
    if status == "queued":
        return "**Queued**: the curves appear once the run starts and logs its first epoch."
    if status == "running":
        return "**Running**: waiting for the first metrics; the curves appear after the first epoch."
    if status == "completed":
        return "This run logged no metrics: there are no curves to draw."
    then = " and resume it" if can_resume(status) else ""
    return f"This run is **{status}** and logged no metrics: see its log{then}."


def _html(markdown: str) -> str:
    """``empty_message``'s markdown (only ``**bold**``) as HTML for an ipywidgets label."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(markdown, quote=False))


class CurvePoller:
    """Accumulates a run's metric rows from the store, incrementally."""

    def __init__(self, store: Store, run_id: str | None = None):
        self.store, self.run_id = store, None
        self.reset(run_id)

    def reset(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.epochs_only = run_id is not None and self.store.has_metrics(run_id, kind="epoch")
        self.frame = pd.DataFrame(columns=["seq", "step", "epoch", "kind", "key", "value", "time"])
        self.last_step: int | None = None
        self.attempt: int | None = None
        self.polls = 0

    def poll(self) -> int:
        """Fetch new rows; returns how many arrived (a resumed run's rows are reloaded from scratch)."""
        if self.run_id is None:
            return 0
        self.polls += 1
        rec = self.store.get_run(self.run_id)
        if self.attempt is not None and rec.attempt != self.attempt:
            self.reset(self.run_id)
        self.attempt = rec.attempt
        new = self.store.metrics(self.run_id, since_step=self.last_step, kind="epoch" if self.epochs_only else None)
        if not self.epochs_only and (new["kind"] == "epoch").any():
            self.epochs_only = True  # from now on the step rows are not drawn: drop them and stop reading them
            self.frame, new = self.frame[self.frame["kind"] == "epoch"], new[new["kind"] == "epoch"]
        if new.empty:
            return 0
        self.frame = new if self.frame.empty else pd.concat([self.frame, new], ignore_index=True)
        self.last_step = int(new["step"].max())
        return len(new)

    @property
    def points(self) -> int:
        """How many rows drawn so far (epoch rows only, once the run has any)."""
        return len(self.frame)

    def figure(self, title: str | None = None) -> Any:
        from kdlab.viz import training_curves

        return training_curves(self.frame, title=title or f"run {self.run_id}")


def _status_line(store: Store, run_id: str | None, poller: CurvePoller) -> str:
    if run_id is None:
        return "no run selected"
    rec = store.get_run(run_id)
    step = poller.last_step if poller.last_step is not None else "-"
    return (f"**{rec.name}** (`{run_id}`): <span class='kdlab-status'>{rec.status}</span>, "
            f"<span class='kdlab-points'>{poller.points}</span> rows drawn, last step {step}")


class RunActions:
    """Cancel and Resume of one run on a Panel page (``LiveCurves``, ``RunDetail``): the two buttons, each shown
    only while its action applies, and a message line. Needs ``store`` and ``run_id``; ``_after_resume`` redraws."""

    store: Store
    run_id: str | None

    def _init_actions(self, css: str) -> None:
        self.message = pn.pane.Alert("", alert_type="light", visible=False)
        self.cancel_button = pn.widgets.Button(name="Cancel run", button_type="danger", disabled=True,
                                               visible=False, css_classes=[f"kdlab-{css}cancel"])
        self.resume_button = pn.widgets.Button(name="Resume run", button_type="primary", disabled=True,
                                               visible=False, css_classes=[f"kdlab-{css}resume"])
        self.cancel_button.on_click(lambda _e: self.cancel())
        self.resume_button.on_click(lambda _e: self.resume())

    def _actions(self, status: str | None) -> None:
        """Offer cancel only for a queued/running run and resume only for a failed/cancelled/interrupted one."""
        for button, ok in ((self.cancel_button, can_cancel(status)), (self.resume_button, can_resume(status))):
            button.disabled, button.visible = not ok, ok

    def cancel(self) -> str:
        """Cancel the shown run (in a thread: the server never waits for the worker to stop)."""
        if not self.run_id:
            return ""
        run_id = self.run_id
        self.cancel_button.disabled = True  # until the next poll shows the run stopped (the button then goes)
        threading.Thread(target=RunHandle(self.store, run_id).cancel, daemon=True).start()
        self._say(f"cancel requested for {run_id}")
        return run_id

    def resume(self) -> str:
        """Resume the shown run from its last checkpoint; returns its status."""
        if not self.run_id:
            return ""
        try:
            status = RunHandle(self.store, self.run_id).resume().status
        except Exception as e:  # shown inline, the server keeps serving
            self._say(str(e), "danger")
            return self.store.get_run(self.run_id).status
        self._say(f"resumed {self.run_id}: {status}")
        self._after_resume()
        return status

    def _after_resume(self) -> None:
        """Redraw after a resume (subclasses say how)."""

    def _say(self, text: str, kind: str = "info") -> None:
        self.message.object, self.message.alert_type, self.message.visible = text, kind, True


class LiveCurves(RunActions, param.Parameterized):
    """Curves of one run updated in place: ``tick()`` polls the store (the dashboard calls it every second)."""

    run_id = param.String(default=None, allow_None=True, doc="run shown")
    status = param.String(default="", doc="status of the run at the last poll")
    points = param.Integer(default=0, doc="metric rows drawn")

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.poller = CurvePoller(store, self.run_id)
        self.plot = pn.pane.Plotly(None, sizing_mode="stretch_width", height=420, visible=False,
                                   css_classes=["kdlab-live-plot"],
                                   config={"displaylogo": False})
        self.empty = pn.pane.Alert(empty_message(None), alert_type="secondary", sizing_mode="stretch_width",
                                   css_classes=["kdlab-live-empty"])
        self.info = pn.pane.Markdown("no run selected", css_classes=["kdlab-live-info"])
        self.logs_pane = pn.pane.Str("", css_classes=["kdlab-logs"], sizing_mode="stretch_width",
                                     styles={"max-height": "220px", "overflow-y": "auto", "font-size": "12px"})
        self.log_title = pn.pane.Markdown("**Log**")
        self._log_seq = 0
        self._lines: list[str] = []
        self._init_actions("")
        self.tick(force=True)

    @param.depends("run_id", watch=True)
    def _switch(self) -> None:
        self.poller.reset(self.run_id)
        self._log_seq, self._lines = 0, []
        self.logs_pane.object = ""
        self.tick(force=True)

    def tick(self, force: bool = False) -> int:
        """Poll new rows and log lines; redraw when something arrived. Returns the rows that arrived."""
        if self.run_id is None:
            self.status, self.points = "", 0
            self.info.object = "no run selected"
            self.info.visible = self.log_title.visible = self.logs_pane.visible = False  # the empty state says it
            self._actions(None)
            self._draw(None)
            return 0
        n = self.poller.poll()
        self.info.visible = self.log_title.visible = self.logs_pane.visible = True
        logs = self.store.logs(self.run_id, since_seq=self._log_seq)
        if len(logs):
            self._log_seq = int(logs["seq"].max())
            self._lines += [f"{t:%H:%M:%S} {lv:7s} {m}" for t, lv, m in
                            zip(logs["time"], logs["level"], logs["message"], strict=True)]
            self._lines = self._lines[-200:]
            self.logs_pane.object = "\n".join(self._lines)
        rec = self.store.get_run(self.run_id)
        if n or force or rec.status != self.status:
            self._draw(rec.status)
        self.status, self.points = rec.status, self.poller.points
        self.info.object = _status_line(self.store, self.run_id, self.poller)
        self._actions(rec.status)
        return n

    def _draw(self, status: str | None) -> None:
        """The curves once there are points; until then, what to do or wait for."""
        if status is None or not self.poller.points:
            self.empty.object = empty_message(status)
            self.empty.visible, self.plot.visible = True, False
            return
        fig = self.poller.figure()
        self.plot.height = int(fig.layout.height or 420)  # the figure's own height: its rows never squeeze
        self.plot.object = fig
        self.empty.visible, self.plot.visible = False, True

    def _after_resume(self) -> None:
        self.tick(force=True)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.info, pn.Row(self.cancel_button, self.resume_button), self.message, self.empty,
                         self.plot, self.log_title, self.logs_pane, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


class RunMonitor:
    """ipywidgets face: a plotly ``FigureWidget`` of the run's curves, a progress bar, status and cancel/resume
    buttons (each shown only while it applies), refreshed from the store between the kernel's other work (a
    coroutine on its loop: widgets are never touched from another thread). Until the run has metrics, a line
    says what to wait for instead of empty axes."""

    def __init__(self, run: Any, store: Store | None = None, interval: float = 1.0, start: bool = True):
        import ipywidgets as w
        import plotly.graph_objects as go

        from kdlab.runs.store import open_store

        if hasattr(run, "store") and hasattr(run, "id"):
            store, run_id = run.store, run.id
        else:
            store = store or open_store()
            run_id = store.resolve(str(run))
        self.store, self.run_id, self.interval = store, run_id, interval
        self.poller = CurvePoller(store, run_id)
        self.figure = go.FigureWidget(self.poller.figure())
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="epochs")
        self.label = w.HTML("")
        self.empty = w.HTML("")
        self.cancel_button = w.Button(description="Cancel", button_style="danger")
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.resume_button = w.Button(description="Resume", button_style="primary")
        self.resume_button.on_click(lambda _b: self.resume())
        self.figure_box = w.Box([self.figure])  # a FigureWidget has no widget layout: its box is hidden
        self.widget = w.VBox([w.HBox([self.progress, self.cancel_button, self.resume_button, self.label]),
                              self.empty, self.figure_box])
        self.updates = 0
        self._follower: asyncio.Task | None = None
        self.update()
        if start:
            self.start()

    def update(self) -> str:
        """Poll the store once and refresh the widgets; returns the run's status."""
        n = self.poller.poll()
        if n:
            fig = self.poller.figure()
            with self.figure.batch_update():
                self.figure.data = []
                self.figure.add_traces(list(fig.data))
                self.figure.layout = fig.layout
            self.updates += 1
        rec = self.store.get_run(self.run_id)
        epochs = (rec.spec.get("optim") or {}).get("epochs") or 1
        ep = self.poller.frame.loc[self.poller.frame["kind"] == "epoch", "epoch"] if n or self.poller.points else []
        done = float(pd.Series(ep).max()) if len(ep) else 0.0
        self.progress.value = 1.0 if rec.status == "completed" else min(1.0, done / epochs)
        self.progress.description = f"{int(done)}/{epochs} ep"
        self.label.value = f"<b>{rec.name}</b> {rec.status} &middot; {self.poller.points} rows"
        drawn = bool(self.poller.points)
        self.empty.value = "" if drawn else _html(empty_message(rec.status))
        self.empty.layout.display, self.figure_box.layout.display = ("none", None) if drawn else (None, "none")
        for button, ok in ((self.cancel_button, can_cancel(rec.status)), (self.resume_button, can_resume(rec.status))):
            button.disabled = not ok
            button.layout.display = None if ok else "none"
        return rec.status

    async def _follow(self) -> None:
        """Poll the store between the kernel's other work (on the kernel's loop, in its thread)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.update() in TERMINAL:
                    return
            except Exception:  # the store is being written: try again at the next tick
                continue

    def start(self) -> RunMonitor:
        """Follow the run live inside a notebook kernel (widgets are only updated from the kernel's thread);
        elsewhere (a script) call ``update()`` when you want a fresh view."""
        loop = kernel_loop()
        if loop is not None and (self._follower is None or self._follower.done()):
            self._follower = loop.create_task(self._follow())
        return self

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()

    def cancel(self) -> str:
        """Cancel the run (in a thread, the kernel stays free)."""
        self.cancel_button.disabled = True
        threading.Thread(target=RunHandle(self.store, self.run_id).cancel, daemon=True).start()
        return self.run_id

    def resume(self) -> str:
        """Resume the run from its last checkpoint (and follow it again); returns its status."""
        self.resume_button.disabled = True
        try:
            status = RunHandle(self.store, self.run_id).resume().status
        except Exception as e:  # shown in the status line, the monitor keeps running
            self.label.value += f" &middot; <span style='color:#C0392B'>{html.escape(str(e))}</span>"
            return self.store.get_run(self.run_id).status
        self.update()
        self.start()
        return status

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)
