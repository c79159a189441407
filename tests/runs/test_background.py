"""Background runs with real worker processes and a real SQLite store: kill, cancel, fail, queue, resume."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import torch
from runs_helpers import tiny_spec, wait_for

import kdlab
from kdlab.cli import main as cli_main
from kdlab.models.checkpoints import load_state
from kdlab.runs.background import RunHandle

pytestmark = pytest.mark.slow


def _epochs_done(h) -> int:
    df = h.metrics(kind="epoch")
    return int(df["epoch"].max()) if len(df) else 0


def _model(path) -> dict[str, torch.Tensor]:
    return load_state(path)["model"]


def test_sigkill_then_resume_matches_uninterrupted(store):
    """SIGKILL mid-run: interrupted within seconds with the reason, metrics kept; resume() ends with the same
    weights as an uninterrupted run of the same spec (CPU, same seed)."""
    spec = tiny_spec(epochs=10, n_train=2000, width=128, name="killme")
    killed = kdlab.launch(spec, store=store, log_every=5)
    reference = kdlab.launch(spec, store=store, log_every=5)  # both run at once (2 slots)
    wait_for(lambda: _epochs_done(killed) >= 2, timeout=90, what="two epochs")
    before = killed.metrics()
    os.kill(killed.record.pid, signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: killed.status in ("interrupted", "failed"), timeout=5, what="interrupted status")
    noticed = time.monotonic() - t0
    rec = killed.record
    assert rec.status == "interrupted" and "SIGKILL" in rec.error and "resume()" in rec.error, rec.error
    after = killed.metrics()
    assert set(before["seq"]) <= set(after["seq"])  # everything written before the kill is still there
    assert _epochs_done(killed) < 10
    killed.resume()
    assert killed.wait(timeout=120) == "completed", killed.record.traceback
    assert reference.wait(timeout=120) == "completed", reference.record.traceback
    a, b = _model(killed.run_dir / "checkpoints" / "last.pt"), _model(reference.run_dir / "checkpoints" / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert killed.record.summary["test/acc"] == reference.record.summary["test/acc"]
    hist_k, hist_r = killed.history(), reference.history()
    assert list(hist_k.index) == list(range(1, 11))  # no missing or duplicated epochs after the resume
    assert hist_k["val/acc"].tolist() == hist_r["val/acc"].tolist()
    epoch_rows = killed.metrics(kind="epoch")
    assert not epoch_rows.duplicated(["epoch", "key"]).any()
    assert any("resuming after epoch" in m for m in killed.logs()["message"])
    print(f"kill noticed after {noticed:.2f} s")


def test_cancel_stops_within_5s(store):
    h = kdlab.launch(tiny_spec(epochs=400, name="long"), store=store)
    wait_for(lambda: _epochs_done(h) >= 1, timeout=90, what="first epoch")
    t0 = time.monotonic()
    status = h.cancel()
    took = time.monotonic() - t0
    assert status == "cancelled" and took < 5, (status, took)
    rec = h.record
    assert rec.status == "cancelled" and "SIGTERM" in rec.error and "last.pt is kept" in rec.error
    state = load_state(h.run_dir / "checkpoints" / "last.pt")  # intact and loadable
    assert 1 <= state["epoch"] < 400
    assert not list((h.run_dir / "checkpoints").glob("*.tmp"))
    assert h.cancel() == "cancelled"  # idempotent


def test_worker_exceptions_end_as_failed(store, tmp_path):
    """A NaN-producing dataset (NonFiniteLossError) and a damaged checkpoint file (CheckpointError; a missing one
    is refused at launch): both end as ``failed`` with the traceback in the store, never a hang."""
    from kdlab.data.register import load_arrays, save_arrays

    x = torch.rand(200, 1, 8, 8)
    kdlab.data.register_arrays("nan-digits-test", kdlab.data.ArrayDataset(x, torch.arange(200) % 4))
    full, part = load_arrays("nan-digits-test")  # registration refuses NaN pixels: damage the saved arrays
    full.x[::3] = float("nan")
    save_arrays("nan-digits-test", full, part)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    try:
        nan = kdlab.launch(tiny_spec(data={"name": "nan-digits-test"}, teacher=None, method={"name": "vanilla"}),
                           store=store)
        missing = kdlab.launch(tiny_spec(student={"name": "mlp", "params": {"width": 32},
                                                  "checkpoint": str(tmp_path / "broken.pt")}), store=store)
        assert nan.wait(timeout=90) == "failed"
        assert missing.wait(timeout=90) == "failed"
    finally:
        kdlab.data.forget("nan-digits-test")
    r = nan.record
    assert r.error.startswith("NonFiniteLossError") and "NonFiniteLossError" in r.traceback
    assert "Traceback" in r.traceback and "_train_epoch" in r.traceback
    r = missing.record
    assert r.error.startswith("CheckpointError") and "broken.pt" in r.error and "build_model" in r.traceback
    assert "NonFiniteLossError" in nan.output()  # the worker's own output has it too


def test_queue_then_all_finish(store, tmp_path, capsys):
    store.max_concurrent = 2
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(kdlab.load_spec(tiny_spec(seed=5, name="from-cli")).to_yaml())
    handles, took = [], []
    for i in range(2):
        t0 = time.perf_counter()
        handles.append(kdlab.launch(tiny_spec(seed=i), store=store, name=f"q{i}", tags=["queue"]))
        took.append(time.perf_counter() - t0)
    assert max(took) < 0.5, f"launch took {took} s"
    assert cli_main(["launch", str(spec_file), "--store", str(store.root)]) == 0
    cli_id = capsys.readouterr().out.split()[0]
    handles.append(RunHandle(store, cli_id))
    statuses = [h.status for h in handles]
    assert statuses[2] == "queued" and statuses[:2].count("completed") + statuses[:2].count("running") == 2
    assert [h.wait(timeout=120) for h in handles] == ["completed"] * 3
    assert all(len(h.history()) == 2 for h in handles)
    rec = handles[0].record
    assert rec.name == "q0" and rec.tags == ["queue"] and rec.pid and rec.host and rec.device == "cpu"
    assert rec.summary["test/acc"] > 0 and handles[0].result()["student"]["test/acc"] == rec.summary["test/acc"]
    assert "completed" in handles[0].logs()["message"].iloc[-1]
    assert store.get_run(cli_id).name == "from-cli"
    assert cli_main(["runs", "--store", str(store.root)]) == 0
    assert cli_main(["status", cli_id[:-2], "--store", str(store.root)]) == 0
    assert cli_main(["logs", cli_id, "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert cli_id in out and "completed" in out and "epoch 2/2" in out
    assert cli_main(["cancel", "../etc", "--store", str(store.root)]) == 2


def test_four_concurrent_runs(store):
    store.max_concurrent = 4
    handles = [kdlab.launch(tiny_spec(epochs=3, seed=i), store=store, log_every=1) for i in range(4)]
    recs = [h.record for h in handles]
    assert [r.status for r in recs] == ["running"] * 4  # none waits in the queue: four worker processes
    assert len({r.pid for r in recs}) == 4 and all(psutil.pid_exists(r.pid) for r in recs)
    assert [h.wait(timeout=150) for h in handles] == ["completed"] * 4
    for h in handles:
        df = h.metrics()
        steps = df[df["kind"] == "step"]
        assert sorted(steps["step"].unique()) == list(range(1, 16))  # 5 steps x 3 epochs, every step logged
        hist = h.history()
        assert list(hist.index) == [1, 2, 3] and hist[["train/loss", "val/acc"]].notna().all().all()
