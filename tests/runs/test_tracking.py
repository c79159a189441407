"""Mirroring runs to MLflow and TensorBoard: the live ``tracking:`` option of the worker and ``kdlab export``.

One tiny training run, executed by the real worker with a live mirror to both targets, is shared by the module;
every read-back compares the target with the store row for row.
"""
from __future__ import annotations

import math
import sys

import pytest
from runs_helpers import tiny_spec, wait_for

import kdlab
from kdlab.errors import ConfigError
from kdlab.runs.spec import ExperimentSpec, JobSpec, load_job
from kdlab.runs.store import open_store
from kdlab.runs.worker import execute

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _run(store, spec: dict, status: str = "running") -> str:
    """``spec`` recorded and executed by the worker in this process (its live mirror thread included)."""
    rid = store.create_run(spec, status=status, options={"log_every": 1})
    execute(rid, store=store, own_process=False)
    return rid


def _rows(store, rid: str) -> dict[str, list[tuple[int, float]]]:
    """The store's metric rows without progress rows: key -> [(step, value), ...] in step order."""
    df = store.metrics(rid)
    df = df[df["kind"] != "progress"]
    return {k: sorted(zip(g["step"].tolist(), g["value"].tolist(), strict=True)) for k, g in df.groupby("key")}


def _mlflow_run(uri: str, rid: str, experiment: str = "kdlab"):
    """The one active MLflow run mirroring kdlab run ``rid`` (fails when there are none or several)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`kdlab.run_id` = '{rid}'", run_view_type=ViewType.ACTIVE_ONLY)
    assert len(runs) == 1, f"{len(runs)} MLflow runs mirror {rid}"
    return client, runs[0]


def _assert_mlflow_rows(uri: str, store, rid: str) -> None:
    client, run = _mlflow_run(uri, rid)
    rows = _rows(store, rid)
    logged = {k for k in run.data.metrics if not k.startswith("summary/")}
    assert logged == set(rows)
    for key, want in rows.items():
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert len(got) == len(want), key
        for (gs, gv), (ws, wv) in zip(got, want, strict=True):
            assert gs == ws and (gv == wv or (math.isnan(gv) and math.isnan(wv))), (key, gs, gv, ws, wv)


def _assert_tensorboard_rows(folder, store, rid: str) -> None:
    acc = EventAccumulator(str(folder / rid), size_guidance={"scalars": 0})
    acc.Reload()
    rows = _rows(store, rid)
    assert {t for t in acc.Tags()["scalars"] if not t.startswith("summary/")} == set(rows)
    for key, want in rows.items():
        got = sorted((e.step, e.value) for e in acc.Scalars(key))
        assert [s for s, _ in got] == [s for s, _ in want], key
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6, nan_ok=True), key


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A store with one completed run mirrored live to an MLflow folder store and a TensorBoard folder."""
    root = tmp_path_factory.mktemp("tracking")
    store = open_store(root / "store")
    targets = {"mlflow": str(root / "mlruns"), "tensorboard": str(root / "tb")}
    rid = _run(store, tiny_spec(tracking=targets))
    assert store.get_run(rid).status == "completed"
    return store, rid, root


def test_live_mirror_to_mlflow_matches_the_store(tracked):
    store, rid, root = tracked
    uri = (root / "mlruns").as_uri()
    _assert_mlflow_rows(uri, store, rid)
    client, run = _mlflow_run(uri, rid)
    assert run.info.status == "FINISHED"
    rec = store.get_run(rid)
    assert run.data.tags["kdlab.status"] == "completed" and run.data.tags["kdlab.kind"] == "train"
    params = run.data.params
    assert params["method.name"] == "kd" and params["optim.lr"] == str(rec.spec["optim"]["lr"])
    assert float(params["method.params.temperature"]) == rec.spec["method"]["params"]["temperature"]
    assert run.data.metrics["summary/test/acc"] == pytest.approx(rec.summary["test/acc"])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "predictions.npz", "summary.json"} <= files and "checkpoints" not in files


def test_live_mirror_to_tensorboard_matches_the_store(tracked):
    store, rid, root = tracked
    _assert_tensorboard_rows(root / "tb", store, rid)
    acc = EventAccumulator(str(root / "tb" / rid), size_guidance={"tensors": 0})
    acc.Reload()
    assert {"kdlab/params/text_summary", "kdlab/summary/text_summary", "kdlab/status/text_summary"} <= set(
        acc.Tags()["tensors"])
    params = acc.Tensors("kdlab/params/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| method.name | kd |" in params


def test_export_twice_does_not_duplicate(tracked, tmp_path):
    store, rid, _ = tracked
    uri, tb = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "tb"
    for to, where in (("mlflow", uri), ("tensorboard", str(tb))):
        first, again = (kdlab.export_runs(store, [rid], to=to, uri=where)[0] for _ in range(2))
        assert not first.skipped and first.rows == sum(map(len, _rows(store, rid).values()))
        assert again.skipped and again.location == first.location
    # a changed run is mirrored anew: the earlier copy is replaced, not added to
    last = int(store.metrics(rid)["step"].max())
    store.log_metrics(rid, last + 1, {"val/acc": 0.5}, epoch=3, kind="epoch")
    try:
        assert not kdlab.export_runs(store, rid, to="mlflow", uri=uri)[0].skipped
        assert not kdlab.export_runs(store, rid, to="tensorboard", uri=str(tb))[0].skipped
        _assert_mlflow_rows(uri, store, rid)
        _assert_tensorboard_rows(tb, store, rid)
        assert [p.name for p in tb.iterdir()] == [rid]
    finally:
        store.truncate_metrics(rid, last)  # the module's run is shared


def test_kdlab_export_command(tracked, tmp_path, capsys):
    from kdlab.cli import main

    store, rid, _ = tracked
    assert main(["export", rid[:15], "--to", "tensorboard", "--uri", str(tmp_path / "tb"),
                 "--store", str(store.root)]) == 0
    assert f"{rid}  tensorboard  {tmp_path / 'tb' / rid}" in capsys.readouterr().out
    _assert_tensorboard_rows(tmp_path / "tb", store, rid)
    assert main(["export", rid, "--to", "mlflow", "--uri", "s3://bucket", "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "uri:" in err and "'s3:' is not supported" in err and "sqlite:///" in err


@pytest.mark.parametrize("tracking, where, text", [
    ({}, "tracking", "names no target"),
    ({"mlflow": "s3://bucket/x"}, "tracking.mlflow", "'s3:' is not supported"),
    ({"tensorboard": "tb", "wandb": "x"}, "tracking.wandb", "unknown field"),
    ({"mlflow": "http://"}, "tracking.mlflow", "names a server"),
])
def test_bad_tracking_sections_are_refused(tracking, where, text):
    for spec in (tiny_spec(tracking=tracking), {"kind": "cka", "params": {"run": "x"}, "tracking": tracking}):
        with pytest.raises(ConfigError) as e:
            load_job(spec)
        assert any(i.where == where for i in e.value.issues) and text in str(e.value), str(e.value)


def test_a_spec_without_tracking_serialises_as_before(tmp_path):
    spec = ExperimentSpec()
    assert "tracking" not in spec.to_dict() and "tracking" not in JobSpec(kind="cka", params={"run": "x"}).to_dict()
    assert spec.digest() == "b0c9d49b7feda88e"  # the digest of the default spec before the tracking field
    tracked = load_job({"tracking": {"tensorboard": str(tmp_path)}})
    assert tracked.to_dict()["tracking"]["tensorboard"] == str(tmp_path) and tracked.digest() != spec.digest()


def test_launch_refuses_what_this_machine_cannot_do(tmp_path, monkeypatch):
    store = open_store(tmp_path / "store")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"tracking\.tensorboard: .*is not a folder"):
        kdlab.launch(tiny_spec(tracking={"tensorboard": str(tmp_path / "file" / "tb")}), store=store)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    with pytest.raises(ConfigError, match=r"tracking\.mlflow: needs MLflow.*pip install 'kdlab\[tracking\]'"):
        kdlab.launch(tiny_spec(tracking={"mlflow": str(tmp_path / "mlruns")}), store=store)
    assert store.records() == []


def test_a_failing_target_does_not_fail_the_run(tmp_path):
    store = open_store(tmp_path / "store")
    (tmp_path / "file").write_text("")  # the TensorBoard folder cannot be created: the mirror to it fails
    spec = tiny_spec(epochs=1, tracking={"tensorboard": str(tmp_path / "file" / "tb"),
                                         "mlflow": f"sqlite:///{tmp_path / 'm.db'}"})
    rid = _run(store, spec)
    assert store.get_run(rid).status == "completed"
    warnings = store.logs(rid).query("level == 'warning'")["message"].tolist()
    assert len(warnings) == 1 and warnings[0].startswith(f"tracking: mirroring to TensorBoard {tmp_path}")
    _assert_mlflow_rows(f"sqlite:///{tmp_path / 'm.db'}", store, rid)  # the other target is whole


def test_a_failed_run_is_marked_failed(tmp_path):
    store = open_store(tmp_path / "store")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    spec = tiny_spec(epochs=1, student={"name": "mlp", "checkpoint": str(tmp_path / "missing.pt")},
                     tracking={"mlflow": uri})
    rid = _run(store, spec)
    assert store.get_run(rid).status == "failed"
    _, run = _mlflow_run(uri, rid)
    assert run.info.status == "FAILED" and run.data.tags["kdlab.status"] == "failed"
    assert "missing.pt" in run.data.tags["kdlab.error"]


@pytest.mark.slow
def test_a_launched_run_is_mirrored_live_and_marked_cancelled(tmp_path):
    store = open_store(tmp_path / "store")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    # long enough to still run when MLflow (its sqlite store set up by the worker) has rows, on a busy machine too
    h = kdlab.launch(tiny_spec(epochs=5000, tracking={"mlflow": uri}), store=store, log_every=1)
    # rows reach MLflow while the run is still going
    client = MlflowClient(uri)

    def mirrored():
        exp = client.get_experiment_by_name("kdlab")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        return runs and "val/acc" in client.get_run(runs[0].info.run_id).data.metrics

    wait_for(lambda: h.status == "running" and mirrored(), timeout=90, poll=0.5, what="live rows in MLflow")
    assert h.status == "running"
    assert h.cancel(timeout=30) == "cancelled"
    # the worker mirrors the end after recording it
    wait_for(lambda: _mlflow_run(uri, h.id)[1].info.status != "RUNNING", timeout=30, poll=0.2, what="the end")
    _, run = _mlflow_run(uri, h.id)
    assert run.info.status == "KILLED" and run.data.tags["kdlab.status"] == "cancelled"
    _assert_mlflow_rows(uri, store, h.id)


def test_a_resumed_run_is_mirrored_afresh(tmp_path):
    from kdlab.runs.tracking import Mirror
    from kdlab.runs.tracking.tensorboard_sink import TensorBoardSink

    store = open_store(tmp_path / "store")
    rid = store.create_run(tiny_spec(), status="running")
    mirror = Mirror(store, rid, [TensorBoardSink(tmp_path / "tb")])
    mirror.begin()
    for step in range(1, 5):
        store.log_metrics(rid, step, {"train/loss": 1.0 / step})
        mirror.sync()
    store.truncate_metrics(rid, 2)  # what resuming from the checkpoint of step 2 does, then steps 3.. again
    store.log_metrics(rid, 3, {"train/loss": 0.25})
    mirror.finish()
    _assert_tensorboard_rows(tmp_path / "tb", store, rid)
    assert mirror.rows == 3
