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
