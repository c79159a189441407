"""The ``ray`` executor against a real local Ray cluster (started once for this module)."""
from __future__ import annotations

import pytest
from runs_helpers import finished_run, tiny_spec, wait_for

import kdlab
from kdlab.errors import ConfigError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from kdlab.runs import ray_executor

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray_executor.shutdown()
    if started:
        ray.shutdown()


def test_ray_run_completes_with_metrics_and_files(cluster, store, monkeypatch):
    h = kdlab.launch(tiny_spec(epochs=3, name="on-ray"), executor="ray", store=store, log_every=1)
    monkeypatch.setenv("KDLAB_RAY_SCRATCH", "1")  # this one works as on another node: files come via the actor
    far = kdlab.launch(tiny_spec(epochs=2, seed=1, name="far"), executor="ray", store=store)
    assert h.wait(timeout=180) == "completed", (h.record.error, h.record.traceback)
    assert far.wait(timeout=180) == "completed", (far.record.error, far.record.traceback)
    rec = h.record
    assert rec.executor == "ray" and rec.pid and rec.device == "cpu"
    assert list(h.history().index) == [1, 2, 3]
    assert sorted(h.metrics(kind="step")["step"].unique()) == list(range(1, 16))
    assert h.result()["student"]["test/acc"] == rec.summary["test/acc"] > 0
    assert any(m.startswith("submitted to Ray") for m in h.logs()["message"])
    for run in (h, far):
        assert (run.run_dir / "checkpoints" / "last.pt").is_file() and (run.run_dir / "results.json").is_file()
        assert "kdlab worker: run" in run.output()
    assert list(far.history().index) == [1, 2]
    # same seed, same numbers as a local run of the spec
    local = kdlab.launch(tiny_spec(epochs=3, name="on-ray"), store=store)
    assert local.wait(timeout=180) == "completed"
    assert local.record.summary["test/acc"] == rec.summary["test/acc"]


def test_ray_failure_and_cancel(cluster, store, tmp_path):
    with pytest.raises(ConfigError, match="missing.pt does not exist"):  # refused before a row or a Ray task
        kdlab.launch(tiny_spec(student={"name": "mlp", "checkpoint": str(tmp_path / "missing.pt")}), executor="ray",
                     store=store)
    assert len(store.list_runs()) == 0
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")  # a damaged file fails in the Ray task
    bad = kdlab.launch(tiny_spec(student={"name": "mlp", "params": {"width": 16},
                                          "checkpoint": str(tmp_path / "broken.pt")}), executor="ray", store=store)
    long = kdlab.launch(tiny_spec(epochs=400, name="ray-long"), executor="ray", store=store)
    assert bad.wait(timeout=120) == "failed"
    r = bad.record
    assert r.error.startswith("CheckpointError") and "broken.pt" in r.error and "build_model" in r.traceback
    wait_for(lambda: len(long.history()) >= 1, timeout=120, what="first epoch on Ray")
    assert long.cancel() == "cancelled"
    assert "last.pt is kept" in long.record.error
    with pytest.raises(ConfigError, match="processes"):
        kdlab.launch(tiny_spec(resources={"processes": 2}), executor="ray", store=store)


def test_cka_job_gives_the_same_grid_on_ray_and_locally(cluster, store):
    rid = finished_run(store)
    params = {"run": rid, "max_samples": 100, "batch_size": 50, "device": "cpu"}
    on_ray = kdlab.submit("cka", store, executor="ray", **params)
    local = kdlab.submit("cka", store, **params)
    for h in (on_ray, local):
        assert h.wait(timeout=180) == "completed", (h.record.error, h.record.traceback)
    assert on_ray.record.executor == "ray" and local.record.executor == "local"
    a, b = on_ray.result().cka, local.result().cka
    assert list(a.index) == list(b.index) == ["features.0", "features.1", "classifier"]
    assert a.to_numpy().tolist() == b.to_numpy().tolist()  # the same job, bit for bit
    assert on_ray.progress().fraction == 1.0 and on_ray.record.summary == local.record.summary
