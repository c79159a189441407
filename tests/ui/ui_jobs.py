"""A job kind for the ui tests, ``ui_gated``: real worker processes whose pace the test sets.

Step ``i`` of ``steps`` is reported (``ctx.progress(i, steps, "step i/steps")``) once the file ``go<i>`` exists in
the ``gate`` folder, so a test can look at a running job at a known step. ``fail`` makes the job raise
``ValueError(fail)`` after its last step; otherwise it saves ``artifacts/gated.json``, which ``read`` returns.
Workers import this module through ``KDLAB_JOB_MODULES`` (see ``gated_kind`` in ``tests/ui/conftest.py``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

KIND = "ui_gated"


@register_job(KIND)
class GatedJob(Job):
    """Steps, each waiting for its gate file (a test helper)."""

    params = {
        "run": Param(None, "a run this job is about (only recorded)", str),
        "gate": Param(None, "folder of the gate files go1, go2, ...", str),
        "steps": Param(3, "steps to report", int, 1, 100),
        "fail": Param("", "raise ValueError(fail) after the last step", str),
    }

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        gate, n = Path(p["gate"]), int(p["steps"])
        for i in range(1, n + 1):
            while not (gate / f"go{i}").exists():
                time.sleep(0.02)
            ctx.progress(i, n, f"step {i}/{n}")
        if p["fail"]:
            raise ValueError(p["fail"])
        tmp = ctx.artifact("gated.json.tmp")
        tmp.write_text(json.dumps({"steps": n, "squares": [i * i for i in range(1, n + 1)]}))
        tmp.replace(ctx.artifact("gated.json"))
        return {"steps": float(n)}

    def read(self, run_dir: str | Path) -> Any:
        path = Path(run_dir) / "artifacts" / "gated.json"
        return json.loads(path.read_text()) if path.is_file() else None
