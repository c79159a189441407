"""Multi-process (DDP) runs through the local executor: 2 CPU ranks (gloo) under ``kdlab.runs.ddp``.

The trainer keeps the global batch at the spec's ``batch_size`` (each of N ranks takes ``batch_size // N``,
the same samples in the same order as one process would), so a 2-rank CPU run takes the same optimiser
steps as the single-process run. It cannot be bit-identical: a step's gradient is the all-reduced average of
two 32-sample means instead of one 64-sample mean (another float summation order), and the teacher, trained
by each run, differs the same way. Those rounding differences stay at float32 level: after 3 epochs the
weights differ by ~3e-8 (pinned at 1e-6) and the logits by ~4e-7 (pinned at 1e-5), while the smallest
top-1/top-2 logit margin on the val and test sets is ~1e-4, so every prediction, and hence every accuracy,
is exactly equal (pinned exactly); losses agree to a relative 1e-6.
"""
from __future__ import annotations

import os
import signal

import psutil
import pytest
import torch
from runs_helpers import tiny_spec, wait_for

import kdlab
from kdlab.data import BatchLoader
from kdlab.distill.evaluate import evaluate
from kdlab.models.checkpoints import load_state
from kdlab.models.inference import predict
from kdlab.runs.experiment import build_model, load_models, load_splits

pytestmark = pytest.mark.slow


def _ranks(h) -> list[psutil.Process]:
    def found():
        try:
            kids = psutil.Process(h.record.pid).children(recursive=True)
        except (psutil.NoSuchProcess, TypeError):
            return None
        return kids if len(kids) == 2 else None

    return wait_for(found, timeout=30, what="two rank processes")


def test_two_process_run_gathers_and_matches_single_process(store):
    spec = tiny_spec(epochs=3, n_train=600, name="ddp")
    ddp = kdlab.launch({**spec, "resources": {"processes": 2}}, store=store, log_every=1)
    single = kdlab.launch(spec, store=store, log_every=1)
    assert ddp.wait(timeout=180) == "completed", (ddp.record.error, ddp.output())
    assert single.wait(timeout=180) == "completed", single.record.error
    hist, ref = ddp.history(), single.history()
    assert list(hist.index) == [1, 2, 3]
    assert hist[["train/loss", "train/acc", "val/acc", "throughput"]].notna().all().all()
    # same number of optimiser steps as one process (global batch = spec batch): 600 / 64 -> 10 per epoch
    steps = ddp.metrics(kind="step")
    assert sorted(steps["step"].unique()) == list(range(1, 31))
    # val accuracy is over the whole val set (gathered from both ranks), not rank 0's shard
    s = kdlab.load_spec(spec)
    splits = load_splits(s)
    last = ddp.run_dir / "checkpoints" / "last.pt"
    student = build_model(s.student.model_copy(update={"checkpoint": str(last)}), splits.train)
    ev = evaluate(student, BatchLoader(splits.val, 512), "cpu")
    assert ev.n == len(splits.val)
    assert hist["val/acc"].iloc[-1] == pytest.approx(ev.acc, abs=1e-12)
    # and it follows the single-process run with the same seed (see the module docstring for the tolerances)
    a = load_state(last)["model"]
    b = load_state(single.run_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    one = load_models(single.run_dir).student
    for split in (splits.val, splits.test):
        la, lb = predict(student, split), predict(one, split)
        torch.testing.assert_close(la, lb, rtol=0, atol=1e-5)
        assert torch.equal(la.argmax(1), lb.argmax(1))
    assert ddp.record.summary["test/acc"] == single.record.summary["test/acc"]
    assert list(hist["val/acc"]) == list(ref["val/acc"])
    for key in ("train/loss", "val/loss"):
        assert list(hist[key]) == pytest.approx(list(ref[key]), rel=1e-6), key
    assert ddp.result()["student"]["test/acc"] == ddp.record.summary["test/acc"]
    out = ddp.output()
    assert out.count("kdlab worker: run") == 2  # both ranks ran, one worker.log


def test_cancel_stops_every_rank(store):
    h = kdlab.launch(tiny_spec(epochs=400, name="ddp-long", resources={"processes": 2}), store=store)
    ranks = _ranks(h)
    wait_for(lambda: len(h.history()) >= 1, timeout=90, what="first epoch")
    assert h.cancel() == "cancelled"
    assert "last.pt is kept" in h.record.error
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ranks),
             timeout=15, what="all ranks gone")


def test_one_rank_dying_fails_the_run(store):
    h = kdlab.launch(tiny_spec(epochs=400, name="ddp-rank-dies", resources={"processes": 2}), store=store)
    ranks = _ranks(h)
    wait_for(lambda: len(h.history()) >= 1, timeout=90, what="first epoch")
    rank1 = next(p for p in ranks if p.environ().get("RANK") == "1")
    os.kill(rank1.pid, signal.SIGKILL)
    assert h.wait(timeout=30) == "failed"
    rec = h.record
    # rank 0 either sees gloo's connection drop first (its own error) or is stopped by the launcher
    assert "another rank" in rec.error or "(rank 0 of 2)" in rec.error, rec.error
    wait_for(lambda: "rank 1 killed by SIGKILL" in h.output(), timeout=15, what="the launcher's note")
    wait_for(lambda: not psutil.pid_exists(rec.pid) or psutil.Process(rec.pid).status() == psutil.STATUS_ZOMBIE,
             timeout=15, what="launcher gone")
