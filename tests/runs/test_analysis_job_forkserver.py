"""The dashboard's fork server (``use_fork_server(ANALYSIS_PRELOAD)``): a job's worker is forked with the analysis
jobs' lazy imports already done, so the job does not pay for them; a worker started as its own process does.

This module also registers the probe kind (``analysis_probe``) that the workers import through
``KDLAB_JOB_MODULES``: it reports which of the preloaded modules were imported when it started."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import kdlab
from kdlab.runs.executors import get_executor
from kdlab.runs.forkserver import ANALYSIS_PRELOAD
from kdlab.runs.job import Job, JobContext, register_job

KIND = "analysis_probe"


@register_job(KIND)
class ProbeJob(Job):
    """How many of ``ANALYSIS_PRELOAD`` this worker had imported when the job started."""

    params: dict = {}

    def run(self, ctx: JobContext) -> dict[str, float]:
        return {"preloaded": float(sum(m in sys.modules for m in ANALYSIS_PRELOAD))}

    def read(self, run_dir):
        return None


@pytest.fixture
def probe_kind(monkeypatch):
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("KDLAB_JOB_MODULES", "test_analysis_job_forkserver")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return KIND


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_dashboards_fork_server_has_the_analysis_imports_done(store, probe_kind):
    plain = kdlab.submit(probe_kind, store, device="cpu")
    assert plain.wait(timeout=90) == "completed", plain.record.error
    assert plain.record.summary["preloaded"] == 0  # a fresh worker imports none of them on its way
    ex = get_executor("local")
    assert ex.fork_server is None
    ex.use_fork_server(ANALYSIS_PRELOAD)  # what the served dashboard does
    try:
        forked = kdlab.submit(probe_kind, store, device="cpu")
        assert forked.wait(timeout=120) == "completed", forked.record.error
        assert "forked by the fork server" in forked.output()
        assert forked.record.summary["preloaded"] == len(ANALYSIS_PRELOAD)
    finally:
        ex.fork_server.close()
        ex.fork_server = None
