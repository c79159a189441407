from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def gated_kind(monkeypatch) -> str:
    """The ``ui_gated`` job kind (tests/ui/ui_jobs.py), registered here and importable by the workers."""
    import os

    import ui_jobs  # noqa: F401  (registers the kind in this process)

    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("KDLAB_JOB_MODULES", "ui_jobs")  # passed on to the workers by launch
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return ui_jobs.KIND
