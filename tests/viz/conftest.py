"""Fixtures of the figure tests (helpers live in viz_helpers.py)."""
from __future__ import annotations

import pytest
from viz_helpers import make_history


@pytest.fixture
def history() -> list[dict[str, float]]:
    return make_history()
