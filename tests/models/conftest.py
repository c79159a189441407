"""Model-zoo tests run single-threaded: on a busy 2-core machine, intra-op threads mostly wait."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _single_threaded(one_thread):
    yield
