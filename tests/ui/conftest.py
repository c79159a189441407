from __future__ import annotations

import pytest

from kdlab.runs.store import Store, open_store


@pytest.fixture
def store(tmp_path) -> Store:
    return open_store(tmp_path / "store")
