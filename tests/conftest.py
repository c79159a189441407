"""Test-wide set-up: every test session gets its own run store and cache folders."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch

_ROOT = tempfile.mkdtemp(prefix="kdlab-tests-")
os.environ.setdefault("KDLAB_HOME", os.path.join(_ROOT, "home"))
os.environ.setdefault("KDLAB_CACHE", os.path.join(_ROOT, "cache"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config: pytest.Config) -> None:
    """Every test runs under a time limit (``timeout`` in pyproject.toml, ``@pytest.mark.timeout(N)`` for slower
    ones): without pytest-timeout the suite refuses to start rather than run unguarded."""
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is not installed: `make test` installs it (pip install -e '.[dev]')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = item.get_closest_marker("timeout")
        if mark is not None and not (mark.args[0] if mark.args else mark.kwargs.get("timeout", 1)):
            raise pytest.UsageError(f"{item.nodeid}: timeout(0) would let it hang; give it a limit in seconds")


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of many small ops: on a busy 2-core machine a second thread only waits.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
