"""Test-wide set-up: every test session gets its own run store and cache folders."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch

_ROOT = tempfile.mkdtemp(prefix="kdlab-tests-")
os.environ.setdefault("KDLAB_HOME", os.path.join(_ROOT, "home"))
os.environ.setdefault("KDLAB_CACHE", os.path.join(_ROOT, "cache"))
# One intra-op thread: the tests share 2 cores with run workers, kernels and browsers, where a second OpenMP thread
# mostly spins waiting for the first (tests/transfer + test_all_methods beside two busy processes: 35 s with two
# threads, 19 s with one; no slower on a quieter machine: 27.7 s vs 27.2 s for a larger set).
torch.set_num_threads(1)
SLOW_TIMEOUT = 300  # the time limit of tests marked ``slow`` that carry no ``@pytest.mark.timeout`` of their own


def pytest_configure(config: pytest.Config) -> None:
    """Every test runs under a time limit (``timeout`` in pyproject.toml; ``SLOW_TIMEOUT`` for ``slow`` tests;
    ``@pytest.mark.timeout(N)`` above that): without pytest-timeout the suite refuses to start rather than run
    unguarded."""
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is not installed: `make test` installs it (pip install -e '.[dev]')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = item.get_closest_marker("timeout")
        if mark is None:
            if item.get_closest_marker("slow") is not None:
                item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
        elif not (mark.args[0] if mark.args else mark.kwargs.get("timeout", 1)):
            raise pytest.UsageError(f"{item.nodeid}: timeout(0) would let it hang; give it a limit in seconds")


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many small ops, whatever the session's setting (one since issue #17).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh run store per test; whatever the test left queued or running is cancelled after it (no worker left
    behind)."""
    from kdlab.runs.store import open_store

    monkeypatch.delenv("KDLAB_MAX_CONCURRENT", raising=False)
    s = open_store(tmp_path / "store")
    yield s
    from kdlab.runs.background import cancel_run

    for rec in s.records(("queued", "running")):
        if rec.status == "running" and rec.pid is None:  # a record made by the test, no worker behind it
            s.set_status(rec.id, "cancelled")
            continue
        try:
            cancel_run(s, rec.id, timeout=5)
        except KeyError:  # a test executor already unregistered
            s.set_status(rec.id, "cancelled")


@pytest.fixture(autouse=True)
def no_leftover_fork_server():
    """A fork server a test starts in this process (a served dashboard holds one) is closed after it: it keeps the
    environment of its start (job kinds, store home), which a later test in the same worker must not inherit."""
    from kdlab.runs.executors import get_executor

    ex = get_executor("local")
    before = ex.fork_server
    yield
    if ex.fork_server is not before:
        if ex.fork_server is not None:
            ex.fork_server.close()
        ex.fork_server = before
