"""The tiny ``diffusion`` run shared by the diffusion page, widget and notebook tests: the same parameters and store,
so one run serves the whole session (whichever test asks first launches it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TINY = {"data": "eight_gaussians", "n_train": 2000, "method": "progressive", "teacher_width": 64, "teacher_steps": 100,
        "steps": 6, "snapshot_every": 3, "n_eval": 100, "batch_size": 64, "teacher_eval_steps": [1, 8],
        "student_eval_steps": [1, 2]}


def tiny_run(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    """(store folder, ``RunHandle``) of the session's tiny run; not waited for (the caller waits when it needs it)."""
    import kdlab
    from kdlab.runs.store import open_store
    from kdlab.ui.diffusion import find_run

    base = tmp_path_factory.getbasetemp() / "diffusion-tiny"
    monkeypatch.setenv("KDLAB_CACHE", str(base / "cache"))  # the teacher is trained once, then cached
    store = open_store(base / "home")
    return base / "home", find_run(store, **TINY) or kdlab.submit("diffusion", store=store, **TINY)


def finished_tiny_run(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """(store folder, run id) of the session's tiny run, completed."""
    home, run = tiny_run(tmp_path_factory, monkeypatch)
    assert run.wait(timeout=180) == "completed", run.record.error
    return home, run.id
