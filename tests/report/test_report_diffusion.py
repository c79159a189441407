"""Report section "diffusion": a ``diffusion`` run folder's method card, quality table, quality against NFE, sample
grids, neighbours and speed become figures of the report, read through the job's reader, every string from the run
(method, citation, run name) escaped; other runs add nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kdlab.jobs.diffusion import NEIGH_FILE, QUALITY_FILE, SAMPLES_FILE, SUMMARY_FILE
from kdlab.report import build, report_figures
from kdlab.report.diffusion import diffusion_section
from kdlab.report.runs import RunData

EVIL = "<script>alert('x')</script>"


def diffusion_folder(root: Path, image: bool = False) -> Path:
    """A run folder as the ``diffusion`` job writes it (small, made by hand in the contract's format)."""
    art = root / "artifacts"
    art.mkdir(parents=True)
    rng = np.random.default_rng(0)
    metric = "fd" if image else "swd"
    rows = [{"who": "teacher", "sampler": "ddim", "steps": k, "nfe": k, "s_per_sample": k / 1e4, metric: 1.0 / k}
            for k in (1, 4, 50)]
    rows += [{"who": "student", "sampler": "ddim", "steps": k, "nfe": k, "s_per_sample": k / 1e4, metric: 0.2 * k}
             for k in (1, 2, 4)]
    pd.DataFrame(rows).to_csv(art / QUALITY_FILE, index=False)
    shape = (1, 6, 6) if image else (2,)
    n = 12
    samples = {f"{w}_{k}": rng.uniform(-1, 1, (n, *shape)) for w, k in (("teacher", 50), ("student", 1))}
    np.savez(art / SAMPLES_FILE, **samples, labels=np.arange(n) % 4, reference=rng.uniform(-1, 1, (20, *shape)))
    if image:
        np.savez(art / NEIGH_FILE, samples=samples["student_1"][:3], neighbours=rng.uniform(-1, 1, (3, 2, *shape)),
                 distances=np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    summary = {"data": "digits" if image else "eight_gaussians", "is_image": image, "method": EVIL,
               "method_params": {"rounds": 1}, "cite": "Salimans & Ho 2022, <b>Progressive</b> distillation",
               "simplification": "two rounds & fewer steps", "teacher": {"arch": "mlp", "params": 1000},
               "samples_per_second": {"student_1": 5000.0, "teacher_50": 100.0}, "guidance": 1.0, "seed": 0}
    (art / SUMMARY_FILE).write_text(json.dumps(summary))
    return root


def metrics() -> pd.DataFrame:
    return pd.DataFrame([{"seq": i, "step": s, "epoch": np.nan, "kind": "step", "key": k, "value": 4.0 / s,
                          "time": 0.0} for i, (s, k) in enumerate((s, k) for s in (1, 2, 3)
                                                                  for k in ("loss/total", "loss/kd"))])


def test_diffusion_run_adds_its_views_escaped(tmp_path):
    spec = {"kind": "diffusion", "params": {"data": "eight_gaussians", "method": EVIL, "seed": 3}}
    run = RunData(name=EVIL, spec=spec, history=metrics(), folder=diffusion_folder(tmp_path / "run"))
    section = diffusion_section(run)
    kinds = [k for k, _t, _f in section]
    assert kinds == ["diffusion-method", "diffusion-quality-table", "diffusion-quality", "diffusion-samples",
                     "diffusion-curves", "diffusion-speed"]
    ids = [f.id for f in report_figures([run]).per_run[0]]
    assert [i for i in ids if "-diffusion-" in i] == [f"kdlab-run0-{k}" for k in kinds]
    assert "kdlab-run0-curves" not in ids  # no empty classifier curves: the loss terms are the section's
    quality = dict(zip(kinds, [f for _k, _t, f in section], strict=True))["diffusion-quality"]
    assert [t.name for t in quality.data] == ["teacher · ddim", "student"]
    assert np.allclose(quality.data[1].y, [0.2, 0.4, 0.8])  # the student's numbers
    html = build([run], tmp_path / "r.html")
    assert EVIL not in html and "<script>alert" not in html and "<b>Progressive" not in html
    assert "&lt;script&gt;alert" in html  # shown literally
    speed = section[-1][2]
    assert "student at 1 step samples 50× faster than the teacher at 50 steps" in speed.layout.title.text
    assert "samples 50\\u00d7 faster" in html  # plotly's JSON writes the × as \\u00d7


def test_image_runs_add_neighbours_and_other_runs_nothing(tmp_path):
    run = RunData(name="digits", history=[], folder=diffusion_folder(tmp_path / "img", image=True))
    kinds = [k for k, _t, _f in diffusion_section(run)]
    assert kinds == ["diffusion-method", "diffusion-quality-table", "diffusion-quality", "diffusion-samples",
                     "diffusion-neighbours", "diffusion-speed"]
    assert diffusion_section(RunData(name="plain", folder=tmp_path)) == []
    assert diffusion_section(RunData(name="no folder")) == []
