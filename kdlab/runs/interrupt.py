"""Ctrl-C that cannot be lost. Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives;
raised inside a ``__del__`` or a garbage-collector callback it is only printed ("Exception ignored") and training
goes on. ``CtrlC`` raises it the same way and also keeps a flag that the trainer checks after each logged step
and each epoch, so a dropped interrupt still ends the run there (with its last checkpoint kept)."""
from __future__ import annotations

import signal
from typing import Any

from kdlab.distill.trainer import Callback


class CtrlC(Callback):
    """A SIGINT handler (installed for the ``with`` block, unless SIGINT is ignored) and a trainer callback."""

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job started with SIGINT ignored
            self._previous = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.hit = True
        raise KeyboardInterrupt

    def _check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def on_step_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self._check()

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self._check()
