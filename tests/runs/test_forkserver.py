"""Local workers forked from the fork server (what a sweep's process uses): a forked run records the same result as
a run started as its own process, starts without the imports, can be cancelled, and one killed is noticed."""
from __future__ import annotations

import os
import signal

import pytest
from runs_helpers import tiny_spec, wait_for

import kdlab
from kdlab.runs.executors import LocalExecutor, get_executor

pytestmark = pytest.mark.slow


@pytest.fixture
def forking(monkeypatch):
    """This process's local executor starts workers through a fork server (restored afterwards)."""
    ex = get_executor("local")
    assert isinstance(ex, LocalExecutor) and ex.fork_server is None
    ex.use_fork_server()
    yield ex
    ex.fork_server.close()
    ex.fork_server = None


def test_forked_runs_match_and_stop(store, forking):
    plain_spec = tiny_spec(epochs=2, name="same")
    forked = kdlab.launch(plain_spec, store=store)
    long = kdlab.launch(tiny_spec(epochs=300, n_train=2000, name="long"), store=store)
    assert forked.wait(timeout=120) == "completed", forked.record.error
    assert "forked by the fork server" in forked.output() and forked.record.pid != os.getpid()
    wait_for(lambda: len(long.history()) >= 1, timeout=60)
    assert long.cancel(timeout=20) == "cancelled"  # SIGTERM reaches a forked worker's process group
    killed = kdlab.launch(tiny_spec(epochs=300, n_train=2000, name="killed"), store=store)
    wait_for(lambda: len(killed.history()) >= 1, timeout=60)
    os.killpg(killed.record.pid, signal.SIGKILL)
    assert killed.wait(timeout=60) == "interrupted" and "gone without recording" in killed.record.error
    fork = forking.fork_server
    forking.fork_server = None  # the same spec started as its own process: the same numbers
    own = kdlab.launch(plain_spec, store=store)
    forking.fork_server = fork
    assert own.wait(timeout=120) == "completed"
    assert "forked by the fork server" not in own.output()
    assert own.record.summary["test/acc"] == forked.record.summary["test/acc"]
    assert own.history()["val/loss"].tolist() == forked.history()["val/loss"].tolist()
