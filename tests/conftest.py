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
