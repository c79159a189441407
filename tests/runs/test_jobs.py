"""The job contract: kinds by name with declared parameters, validation before any run exists, analysis jobs run by
real local workers with the same numbers as the plain calls, progress in the store, SIGKILL and resume."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from runs_helpers import finished_run, tiny_spec, wait_for

import kdlab
from kdlab.analysis.cka import cka_matrix
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.jobs.cka import default_layers
from kdlab.jobs.condense import list_snapshots
from kdlab.runs.experiment import load_models
from kdlab.runs.job import get_job, list_jobs
from kdlab.runs.scheduler import refresh
from kdlab.runs.spec import JobSpec, load_job

KINDS = {"train", "condense", "cka", "frequency", "graph_kd", "graph_condense", "transfer_rank", "student_choice",
         "neighbours"}


@pytest.fixture
def finished(store):
    return finished_run(store)


def test_registry_lists_every_kind_with_declared_params():
    rows = {r["name"]: r for r in list_jobs()}
    assert KINDS <= set(rows)
    assert "max_samples" in rows["cka"]["params"] and rows["train"]["params"] == ""
    assert get_job("frequency").resumable and get_job("train").resumable and not get_job("cka").resumable


def test_job_specs_validate_params_and_kinds():
    spec = load_job({"kind": "cka", "params": {"run": "x", "split": "test"}})
    assert isinstance(spec, JobSpec) and spec.params["max_samples"] == 500 and spec.name == "cka-x"
    assert load_job({"kind": "train", **tiny_spec()}).task == "distill"  # train/condense: experiment specs
    with pytest.raises(ConfigError, match=r"params.split: 'nope' is not one of \['val', 'test', 'train'\]"):
        load_job({"kind": "cka", "params": {"run": "x", "split": "nope"}})
    with pytest.raises(ConfigError, match=r"params.max_samples.*outside"):
        load_job({"kind": "cka", "params": {"max_samples": 1}})
    with pytest.raises(ConfigError, match="unknown parameter of job kind 'cka'; valid: batch_size, embedding"):
        load_job({"kind": "cka", "params": {"samples": 10}})
    with pytest.raises(ConfigError, match="unknown job kind 'ckaa'.*Did you mean 'cka'"):
        load_job({"kind": "ckaa"})


def test_bad_job_fails_before_any_run_exists(store, finished):
    before = [r.id for r in store.records()]
    with pytest.raises(UnknownNameError, match="unknown run 'missing'"):
        kdlab.submit("cka", store, run="missing")
    with pytest.raises(ConfigError, match="is a cka job, not a training run|completed training run"):
        kdlab.submit("cka", store, run=None)
    vanilla = store.create_run(tiny_spec(teacher=None, method={"name": "vanilla"}), status="completed")
    with pytest.raises(ConfigError, match="has no teacher"):
        kdlab.submit("cka", store, run=vanilla)
    assert [r.id for r in store.records()] == [vanilla, *before]  # nothing was created by the failed launches
    assert sorted(p.name for p in store.runs_dir.iterdir()) == sorted([vanilla, *before])


def test_cka_job_in_a_worker_equals_the_plain_call(store, finished):
    h = kdlab.submit("cka", store, run=finished[:12], max_samples=120, batch_size=50, device="cpu")
    assert h.kind == "cka" and store.get_run(h.id).spec["params"]["run"] == finished  # prefix resolved
    assert h.wait(timeout=180) == "completed", h.record.error
    res = h.result()
    m = load_models(store.run_dir(finished))
    want = cka_matrix(m.teacher, m.student, m.splits.val, default_layers(m.teacher), default_layers(m.student),
                      batch_size=50, max_samples=120)
    np.testing.assert_allclose(res.cka.to_numpy(), want.to_numpy(), atol=1e-10)
    assert res.cka.attrs["n_samples"] == 120 and set(res.figures()) == {"cka", "agreement", "embeddings"}
    p = h.progress()
    assert p.done == p.total > 0 and p.fraction == 1.0 and p.message.startswith("completed")
    assert store.get_run(h.id).summary["cka/logits"] == pytest.approx(want.to_numpy()[-1, -1])
    runs = store.list_runs()
    assert runs.set_index("id").loc[h.id, "kind"] == "cka" and runs.set_index("id").loc[finished, "kind"] == "train"
    assert [r.id for r in store.jobs("cka", of=finished)] == [h.id]


def test_cka_analysis_runs_each_model_once_per_batch_and_equals_separate_passes(store, finished):
    """The agreement and the embeddings come from the CKA pass's own forward passes: one per model and batch, and
    the same results as the agreement's and the embeddings' own passes."""
    from kdlab.analysis.agreement import model_agreement
    from kdlab.analysis.embeddings import embed_pair
    from kdlab.jobs.cka import analyze
    from kdlab.models.taps import declared_layers

    m = load_models(store.run_dir(finished))
    calls = {"t": [], "s": []}
    hooks = [model.register_forward_pre_hook(lambda _m, args, k=k: calls[k].append(len(args[0])))
             for k, model in (("t", m.teacher), ("s", m.student))]
    try:
        _cka, agree, emb = analyze(m.teacher, m.student, m.splits.val, batch_size=50, max_samples=120)
    finally:
        for h in hooks:
            h.remove()
    data_passes = {k: [n for n in sizes if n > 2] for k, sizes in calls.items()}  # 2: the layer-shape probe
    assert data_passes == {"t": [50, 50, 20], "s": [50, 50, 20]}
    want = model_agreement(m.teacher, m.student, m.splits.val.subset(np.arange(120)))
    assert agree.top1 == want.top1 and agree.kl == pytest.approx(want.kl, abs=1e-6)
    assert np.array_equal(agree.agree, want.agree) and agree.per_class.equals(want.per_class)
    ref = embed_pair(m.teacher, m.student, m.splits.val, declared_layers(m.teacher, "embedding")[0],
                     declared_layers(m.student, "embedding")[0], max_samples=120)
    np.testing.assert_allclose(emb.teacher, ref.teacher, atol=1e-5)
    np.testing.assert_allclose(emb.student, ref.student, atol=1e-5)
    assert np.array_equal(emb.labels, ref.labels)


def test_frequency_job_killed_mid_run_is_interrupted_and_resumes_what_is_missing(store, finished):
    h = kdlab.submit("frequency", store, run=finished, n_images=200, heatmap_images=120, device="cpu")
    wait_for(lambda: "Fourier heat map: student" in h.progress().message, timeout=180, what="second heat map")
    bands = h.run_dir / "artifacts" / "frequency_bands.csv"
    stamp = bands.stat().st_mtime_ns
    os.killpg(h.record.pid, signal.SIGKILL)
    wait_for(lambda: h.status == "interrupted", timeout=10, what="interrupted")  # the reaper notices at once
    assert "SIGKILL" in h.error and h.result().heatmaps.keys() == {"teacher"}  # what was done is kept
    assert h.resume().wait(timeout=180) == "completed", h.record.error
    art = h.result()
    assert set(art.heatmaps) == {"teacher", "student"} and art.spectra is not None
    assert bands.stat().st_mtime_ns == stamp  # the band curves were not computed again
    assert h.record.attempt == 2


def test_reads_never_start_work(store, monkeypatch):
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "0")  # launch queues the job but starts nothing
    h = kdlab.submit("graph_kd", store, nodes=200, epochs=5, features=16, device="cpu")
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "2")
    for _ in range(3):
        store.list_runs(), store.get_run(h.id), store.records(), store.progress(h.id), store.jobs("graph_kd")
    assert store.get_run(h.id).status == "queued" and store.get_run(h.id).pid is None
    refresh(store)
    assert h.wait(timeout=180) == "completed"
    table = h.result()
    assert list(table["model"]) == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_condense_job_killed_mid_run_resumes_from_its_newest_snapshot(store):
    spec = {"name": "dm-kill", "task": "condense", "seed": 0, "device": "cpu",
            "data": {"name": "digits", "params": {"size": 16}},
            "condense": {"params": {"method": "dm", "ipc": 1, "iterations": 80, "snapshot_every": 10,
                                    "batch_real": 32},
                         "evaluation": {"epochs": 5, "n_nets": 1}}}
    h = kdlab.launch(spec, store=store)
    wait_for(lambda: len(list_snapshots(h.run_dir)) >= 3, timeout=240, what="3 snapshots")
    os.killpg(h.record.pid, signal.SIGKILL)
    wait_for(lambda: h.status == "interrupted", timeout=10, what="interrupted")
    kept = list_snapshots(h.run_dir)
    assert kept[-1] >= 20 and "SIGKILL" in h.error
    assert h.resume().wait(timeout=300) == "completed", h.record.error
    assert any(f"resuming after iteration {kept[-1]}" in m for m in h.logs()["message"])
    steps = h.metrics(kind="step", keys=["condense/loss"])["step"].tolist()
    assert steps == list(range(1, 81))  # each iteration's loss once: the rows after the snapshot were replaced
    assert h.result().x.shape == (10, 1, 16, 16) and h.record.summary["test/acc"] > 0.1
