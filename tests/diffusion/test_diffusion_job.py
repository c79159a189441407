"""The ``diffusion`` job end to end: through the store and a worker, the same seed giving the same numbers, bad
input stopped before any run, kill-and-resume, and the job loading without the extra."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from waiting import wait_for

import kdlab
from kdlab.diffusion import MLPDenoiser, load_denoiser, save_denoiser
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.jobs.diffusion import load_diffusion_artifacts
from kdlab.runs.job import JobContext, check_kind_params, get_job
from kdlab.runs.store import open_store

TINY = {"data": "eight_gaussians", "n_train": 2000, "teacher_width": 32, "teacher_steps": 150, "steps": 12,
        "n_eval": 200, "teacher_eval_steps": [1, 5], "student_eval_steps": [1, 2], "method": "progressive",
        "method_params": {"start_steps": 4}, "snapshot_every": 4}


def run_foreground(tmp_path: Path, **params):
    """The job in this process (no store): its summary numbers and what it wrote."""
    job = get_job("diffusion")
    p = job.check(check_kind_params("diffusion", {**TINY, **params}), None)
    summary = job.run(JobContext(spec=SimpleNamespace(params=p), run_dir=tmp_path))
    return summary, job.read(tmp_path)


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


@pytest.mark.timeout(240)
def test_a_run_through_the_store_records_terms_snapshots_and_artifacts(store):
    h = kdlab.submit("diffusion", store, device="cpu", **TINY)
    assert h.wait(timeout=220) == "completed", h.record.error
    art = h.result()
    q = art.quality
    assert [(r.who, r.steps, r.nfe) for r in q.itertuples()] == [("teacher", 1, 1), ("teacher", 5, 5),
                                                                  ("student", 1, 1), ("student", 2, 2)]
    assert (q["swd"] > 0).all() and q["coverage"].between(0, 1).all() and (q["s_per_sample"] > 0).all()
    assert art.samples["student_1"].shape == (200, 2) and art.samples["labels"].max() == 7
    assert art.trajectories["teacher"].shape[0] == 6 and art.trajectories["student"].shape[0] == 3
    assert np.allclose(art.trajectories["student"][-1][:5], art.trajectories["student"][-1][:5])
    assert art.snapshots["step"].tolist() == [4, 8, 12] and art.snapshots["samples"].shape[:2] == (3, 1000)
    losses = h.metrics(kind="step")
    assert sorted(set(losses["step"])) == list(range(1, 13))  # every step's terms, once
    assert h.metrics(kind="eval")["step"].tolist() == [4, 8, 12]
    s = art.summary
    assert "Salimans" in s["cite"] and s["student_params"] > 0 and s["samples_per_second"]["student_1"] > 0
    assert (h.run_dir / "student" / "model.safetensors").is_file()


@pytest.mark.timeout(240)
def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_numbers(tmp_path):
    fast = {"steps": 6, "snapshot_every": 3, "n_eval": 100}
    runs = [run_foreground(tmp_path / f"r{i}", seed=s, **fast)[1] for i, s in enumerate((3, 3, 4))]
    cols = ["who", "steps", "nfe", "swd", "mmd", "coverage"]
    pd.testing.assert_frame_equal(runs[0].quality[cols], runs[1].quality[cols])
    assert np.array_equal(runs[0].snapshots["samples"], runs[1].snapshots["samples"])
    student = runs[0].quality["who"] == "student"
    assert not np.allclose(runs[0].quality[student]["swd"], runs[2].quality[student]["swd"])


def test_bad_input_stops_before_any_run(tmp_path, store):
    def submit(**over):
        return kdlab.submit("diffusion", store, **{**TINY, **over})

    with pytest.raises(ConfigError, match=r"params.guidance.*\[0.0, 20.0\]"):
        submit(guidance=25.0)
    with pytest.raises(ConfigError, match=r"params.student_eval_steps\[1\].*\[1, 1000\]"):
        submit(student_eval_steps=[1, 0])
    with pytest.raises(ConfigError, match="params.steps"):
        submit(steps=0)
    with pytest.raises(UnknownNameError, match="consistency"):
        submit(method="consistancy")
    with pytest.raises(ConfigError, match="params.method_params.start_steps"):
        submit(method_params={"start_steps": "many"})
    with pytest.raises(ConfigError, match="needs class labels"):
        submit(data="swiss_roll", method="guidance", method_params={})
    save_denoiser(MLPDenoiser(2, 8, width=16, depth=1), tmp_path / "toy_teacher")
    with pytest.raises(ConfigError, match=r"teacher of another model.*shape \[2\] with 8 classes.*\[1, 8, 8\]"):
        submit(data="digits", teacher_path=str(tmp_path / "toy_teacher"))
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ConfigError, match="params.teacher_path.*not a kdlab diffusion denoiser"):
        submit(teacher_path=str(tmp_path / "lm"))
    assert store.records() == []  # nothing was launched


def test_a_users_unconditional_teacher_is_used_as_it_is_and_its_student_saved(tmp_path):
    torch.manual_seed(0)
    folder = save_denoiser(MLPDenoiser(2, 0, width=16, depth=1), tmp_path / "mine")
    with pytest.raises(ConfigError, match="teacher of another model.*0 classes"):
        run_foreground(tmp_path / "no", teacher_path=str(folder))
    _, art = run_foreground(tmp_path / "run", teacher_path=str(folder), conditional=False, steps=2,
                            snapshot_every=2, n_eval=100)
    assert art.summary["teacher"]["source"] == "path" and art.summary["teacher"]["params"] < 5000
    assert not art.summary["conditional"] and (art.samples["labels"] == -1).all()
    assert art.quality["coverage"].notna().all()  # the metrics still know the modes
    student = load_denoiser(tmp_path / "run" / "student")
    assert student.num_classes == 0 and student.config == MLPDenoiser(2, 0, width=16, depth=1).config


def test_the_job_loads_without_diffusers_and_says_how_to_install_it(monkeypatch):
    from kdlab.jobs import diffusion

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ModuleNotFoundError
    for name in [m for m in sys.modules if m.startswith("kdlab.diffusion")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError, match=r"pip install 'kdlab\[diffusion\]'"):
        diffusion.diffusion_module()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_run_resumes_from_its_last_checkpoint(store):
    params = {**TINY, "steps": 300, "checkpoint_every": 10, "snapshot_every": 100}
    h = kdlab.submit("diffusion", store, device="cpu", **params)
    state = h.run_dir / "checkpoint" / "state.pt"
    wait_for(lambda: state.is_file() and torch.load(state, weights_only=True)["method"]["step"] >= 20,
             timeout=240, what="a checkpoint at step 20")
    os.killpg(h.record.pid, signal.SIGKILL)
    wait_for(lambda: h.status == "interrupted", timeout=20, what="interrupted")
    saved = torch.load(state, weights_only=True)["method"]["step"]
    assert h.resume().wait(timeout=240) == "completed", h.record.error
    assert any(f"resuming after step {saved}" in m for m in h.logs()["message"])
    steps = h.metrics(kind="step")["step"]
    assert sorted(set(steps)) == list(range(1, 301)) and steps.value_counts().nunique() == 1  # none doubled
    assert load_diffusion_artifacts(h.run_dir).snapshots["step"].tolist() == [100, 200, 300]
