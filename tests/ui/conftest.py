from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.runs.store import Store, open_store


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.delenv("KDLAB_MAX_CONCURRENT", raising=False)
    s = open_store(tmp_path / "store")
    yield s
    # leave no worker behind: cancel whatever the test left queued or running in its store
    from kdlab.runs.background import cancel_run

    for rec in s.records(("queued", "running")):
        if rec.status == "running" and rec.pid is None:  # a record made by the test, no worker behind it
            s.set_status(rec.id, "cancelled")
            continue
        try:
            cancel_run(s, rec.id, timeout=5)
        except KeyError:
            s.set_status(rec.id, "cancelled")


@pytest.fixture
def gated_kind(monkeypatch) -> str:
    """The ``ui_gated`` job kind (tests/ui/ui_jobs.py), registered here and importable by the workers."""
    import os

    import ui_jobs  # noqa: F401  (registers the kind in this process)

    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("KDLAB_JOB_MODULES", "ui_jobs")  # passed on to the workers by launch
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return ui_jobs.KIND
