"""``TaskWidget``: the ipywidgets face of one job kind (button, progress bar, label, figures).

``compute()`` (or the button) submits the job to the store and returns at once; the widget follows the run from
the store, so the kernel stays free and a restarted kernel loses nothing (``follow(latest(...))`` picks the job up
again). Widgets are only ever updated from the kernel's own thread: a coroutine on the kernel's event loop polls
the store while the kernel is idle, and ``wait()`` polls it in the calling cell, never from a helper thread.
Subclasses set ``kind`` and say what to draw (``figures``); outputs are set as the Output widget's state (``show``),
never captured with ``with out:``.
"""
from __future__ import annotations

import asyncio
import html
import time
from typing import Any

from kdlab.runs.background import RunHandle, failure_of
from kdlab.runs.store import TERMINAL, Store, open_store
from kdlab.ui.tasks import latest, submit

POLL_S = 0.5


def kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of the IPython kernel this code runs in (None outside one, e.g. a script)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def show(out: Any, objects: list[Any]) -> None:
    """Put ``objects`` (figures, tables) into the Output widget ``out`` by setting its state: nothing is captured
    (``with out:`` would send every output back over the kernel's shell socket, where a client such as nbclient
    can miss the cell's reply under load) and the outputs are in ``out.outputs`` even without a frontend."""
    out.outputs = ()
    for obj in objects:
        out.append_display_data(obj)


class TaskWidget:
    """A button, a progress bar, a label and an output area around one job of kind ``kind``."""

    kind = ""
    title = "Compute"

    def __init__(self, store: Store | str | None = None, **params: Any) -> None:
        import ipywidgets as w

        self.store = store if isinstance(store, Store) else open_store(store)
        self.params = params
        self.task: RunHandle | None = None
        self.result: Any = None
        self._shown: str | None = None  # the id of the job whose result is drawn
        self._follower: asyncio.Task | None = None
        self.button = w.Button(description=self.title, button_style="primary")
        self.button.on_click(lambda _b: self.compute())
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.label = w.HTML("")
        self.out = w.Output()
        self.widget = w.VBox([w.HBox([self.button, self.progress, self.label]), self.out])

    # -- what subclasses say -----------------------------------------------------------------------
    def figures(self, result: Any) -> list[Any]:
        """What to display once ``result`` (the job kind's ``read``) is in."""
        raise NotImplementedError

    def done_message(self, result: Any) -> str:
        return "done"

    # -- actions -----------------------------------------------------------------------------------
    def compute(self) -> RunHandle:
        """Submit the job (a run in the store) and follow it; returns at once."""
        if self.task is not None and not self.task.done:
            return self.task
        return self.follow(submit(self.store, self.kind, **self.params))

    def follow(self, task: RunHandle | str | None = None) -> RunHandle | None:
        """Show ``task`` (a ``RunHandle`` or run id; default: the newest job of this kind) live, then its result."""
        if task is None:
            task = latest(self.store, self.kind, of=self.params.get("run"))
        elif isinstance(task, str):
            task = RunHandle(self.store, task)
        self.task, self._shown = task, None
        if task is None:
            self.label.value = "no job yet: press the button"
            return None
        self.button.disabled = not task.done
        self.update()
        loop = kernel_loop()
        if loop is not None and not task.done:
            if self._follower is not None:
                self._follower.cancel()
            self._follower = loop.create_task(self._follow())
        return task

    async def _follow(self) -> None:
        """Poll the store between the kernel's other work (runs on the kernel's loop, in its thread)."""
        while not self.update():
            await asyncio.sleep(POLL_S)

    def update(self) -> bool:
        """One poll: mirror the job's progress; once it has ended, draw its result (once). Returns whether it
        has ended."""
        task = self.task
        if task is None:
            return True
        rec = task.record  # one read a poll (reconciled: in a kernel nothing else notices a dead worker)
        p = task.store.progress(task.id)
        self.progress.value = p.fraction
        if rec.status not in TERMINAL:
            what = "running" if rec.status == "running" else "queued"
            self.label.value = html.escape(f"{what}: {p.message}" if p.message else what)
            return False
        if self._shown == task.id:
            return True
        self._shown = task.id
        self.button.disabled, self.progress.value = False, 1.0
        error = failure_of(rec)
        if error is not None:
            self.label.value = f"failed: {html.escape(error)}"
            return True
        self.result = task.result()
        self.label.value = html.escape(self.done_message(self.result))
        show(self.out, self.figures(self.result))
        return True

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job has ended and its result is drawn (scripts, tests); returns the result."""
        task = self.task or self.compute()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.update():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {task.id} is still {task.status} after {timeout:g} s")
            time.sleep(POLL_S / 2)
        error = task.failure()
        if error is not None:
            raise RuntimeError(f"job {task.id} {error}")
        return self.result

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)


class LiveTaskWidget(TaskWidget):
    """A ``TaskWidget`` that also draws the job's loss terms while it trains (``live_figure(metrics)``, at most
    every ``LIVE_EVERY_S`` seconds and only when new ``loss/*`` rows arrived); the result's views replace them."""

    LIVE_EVERY_S = 2.0

    def __init__(self, store: Store | str | None = None, **params: Any) -> None:
        import ipywidgets as w

        super().__init__(store, **params)
        self.live = w.Output()
        self.widget.children = (*self.widget.children[:1], self.live, *self.widget.children[1:])
        self._live_rows, self._live_at = -1, 0.0

    def live_figure(self, metrics: Any) -> Any:
        """The live figure of the job's metric rows (a plotly figure)."""
        raise NotImplementedError

    def update(self) -> bool:
        ended = super().update()
        self._draw_live(ended)
        return ended

    def _draw_live(self, ended: bool) -> None:
        task = self.task
        if task is None:
            return
        if ended:
            if self._live_rows != -2:
                self.live.outputs, self._live_rows = (), -2  # the result's curves replace the live ones
            return
        if time.monotonic() - self._live_at < self.LIVE_EVERY_S:
            return
        self._live_at = time.monotonic()
        metrics = task.store.metrics(task.id)
        rows = int(metrics["key"].astype(str).str.startswith("loss/").sum()) if len(metrics) else 0
        if rows and rows != self._live_rows:
            self._live_rows = rows
            show(self.live, [self.live_figure(metrics)])

    def follow(self, task: Any = None) -> Any:
        self._live_rows = -1
        return super().follow(task)
