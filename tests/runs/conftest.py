"""Shared fixture of the run-store tests: a fresh store per test (helpers live in runs_helpers.py)."""
from __future__ import annotations

import pytest

from kdlab.runs.store import Store, open_store


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.delenv("KDLAB_MAX_CONCURRENT", raising=False)
    s = open_store(tmp_path / "store")
    yield s
    # leave no worker behind: cancel whatever is still active in this test's store
    from kdlab.runs.background import cancel_run

    for rec in s.records(("queued", "running")):
        try:
            cancel_run(s, rec.id, timeout=5)
        except KeyError:  # a test executor already unregistered
            s.set_status(rec.id, "cancelled")
