"""``TaskWidget``: the ipywidgets face of one background computation (button, progress bar, label, output).

Notebook widgets subclass it with ``submit()`` (start the work through ``kdlab.ui.tasks.submit``) and
``figures(result)``; a thread mirrors the progress, so the kernel stays free, and ``wait()`` blocks for scripts.
"""
from __future__ import annotations

import html
import threading
import time
from typing import Any

from kdlab.ui.tasks import Task


class TaskWidget:
    """A button, a progress bar and an output area around one background computation."""

    title = "Compute"

    def __init__(self) -> None:
        import ipywidgets as w

        self.task: Task | None = None
        self.result: Any = None
        self.finished = threading.Event()
        self.button = w.Button(description=self.title, button_style="primary")
        self.button.on_click(lambda _b: self.compute())
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.label = w.HTML("")
        self.out = w.Output()
        self.widget = w.VBox([w.HBox([self.button, self.progress, self.label]), self.out])

    def submit(self) -> Task:
        """Start the computation (``kdlab.ui.tasks.submit``); subclasses say what it is."""
        raise NotImplementedError

    def figures(self, result: Any) -> list[Any]:
        """What to display once ``result`` is in."""
        raise NotImplementedError

    def done_message(self, result: Any) -> str:
        return "done"

    def compute(self) -> Task:
        """Start the computation in the background; the figures appear when it is done."""
        if self.task is not None and not self.task.done:
            return self.task
        self.task = self.submit()
        self.button.disabled = True
        self.finished.clear()
        threading.Thread(target=self._follow, args=(self.task,), daemon=True, name="kdlab-task-widget").start()
        return self.task

    def _follow(self, task: Task) -> None:
        """Mirror the task's progress (in a thread), then show its figures or its error."""
        while not task.done:
            self.progress.value = task.progress.fraction
            self.label.value = html.escape(task.progress.message)
            time.sleep(0.2)
        self.button.disabled, self.progress.value = False, 1.0
        if task.error() is not None:
            self.label.value = f"failed: {html.escape(str(task.error()))}"
        else:
            from IPython.display import display

            self.result = task.result()
            self.label.value = html.escape(self.done_message(self.result))
            with self.out:
                self.out.clear_output()
                for fig in self.figures(self.result):
                    display(fig)
        self.finished.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the result is computed and shown (scripts and tests); returns it."""
        task = self.task or self.compute()
        res = task.result(timeout)
        self.finished.wait(timeout)
        return res

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)
