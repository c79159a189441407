"""The ``lm_distill`` job end to end: through the store and a worker, every mode of the method registry in the
foreground, bad input stopped before any run, a user's folder with unreadable files, and kill-and-resume."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from waiting import wait_for

import kdlab
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.jobs.lm_distill import load_lm_artifacts
from kdlab.runs.job import JobContext, check_kind_params, get_job
from kdlab.runs.store import open_store
from kdlab.text import TextTokenizer, load_lm

TINY = {"max_mb": 0.3, "max_domains": 4, "teacher_layers": 2, "teacher_width": 64, "teacher_vocab": 512,
        "teacher_steps": 30, "student_width": 32, "steps": 12, "batch_size": 8, "block_size": 32,
        "eval_every": 6, "eval_kb": 3, "baseline": False}


def run_foreground(tmp_path: Path, **params) -> tuple[dict, object]:
    """The job in this process (no store): its summary numbers and what it wrote."""
    job = get_job("lm_distill")
    p = job.check(check_kind_params("lm_distill", {**TINY, **params}), None)
    summary = job.run(JobContext(spec=SimpleNamespace(params=p), run_dir=tmp_path))
    return summary, job.read(tmp_path)


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


@pytest.mark.timeout(240)
def test_a_run_through_the_store_records_terms_evaluations_and_artifacts(store):
    h = kdlab.submit("lm_distill", store, device="cpu", **{**TINY, "baseline": True})
    assert h.wait(timeout=220) == "completed", h.record.error
    art = h.result()
    table = art.eval
    assert set(table["model"]) == {"teacher", "student", "no-KD student"}
    domains = art.summary["domains"]
    assert len(domains) == 4 and set(table["domain"]) == {*domains, "all"}
    for _, g in table.groupby("model"):  # "all" sums the domains
        dom, total = g[g["domain"] != "all"], g[g["domain"] == "all"].iloc[0]
        assert dom["bytes"].sum() == total["bytes"] and dom["tokens"].sum() == total["tokens"]
        assert np.isclose((dom["nll"] * dom["tokens"]).sum() / np.log(2) / dom["bytes"].sum(), total["bpb"])
    student = table[(table["model"] == "student") & (table["domain"] == "all")].iloc[0]
    assert 0 <= student["agreement"] <= 1 and student["kl"] > 0
    steps = h.metrics(kind="step", keys=["loss/ce"])["step"].tolist()
    assert steps == list(range(1, 13))  # every step's terms, once
    assert set(h.metrics(kind="step")["key"]) >= {"loss/ce", "loss/kd", "loss/total", "lr"}
    assert h.metrics(kind="epoch", keys=["val/bpb"])["step"].tolist() == [6, 12]
    rec = store.get_run(h.id)
    assert rec.summary["test/bpb/student"] == pytest.approx(student["bpb"])
    assert "test/bpb/no-KD_student" in rec.summary
    # the student is saved with its tokenizer (safetensors) and reproduces the evaluation's tokens
    model, tok = load_lm(h.run_dir / "student"), TextTokenizer.load(h.run_dir / "student")
    assert tok.vocab_size == model.get_output_embeddings().weight.shape[0]
    assert art.tokens is not None and len(art.tokens) > 10 and (art.tokens["kl"] >= -1e-6).all()
    assert art.samples and {"prompt", "teacher", "student"} <= set(art.samples[0])


@pytest.mark.parametrize("method, params, extra", [
    ("taid", {}, {}),
    ("ddk", {"every": 4}, {}),
    ("seq_kd", {"pool": 16, "prompt_len": 8}, {}),
    ("on_policy", {"lmbda": 0.5}, {}),
    ("forward_kl", {}, {"topk": 8}),
    ("reverse_kl", {}, {"topk": 8}),
    ("alm", {}, {"student_vocab": 384}),
    ("omp", {"anchors": 4}, {"student_vocab": 384, "baseline": True}),
])
@pytest.mark.timeout(180)
def test_every_mode_runs_and_writes_what_it_shows(tmp_path, method, params, extra):
    summary, art = run_foreground(tmp_path, method=method, method_params=params, **extra)
    assert np.isfinite(summary["test/bpb/student"])
    models = set(art.eval["model"])
    if method == "omp":  # the transplanted teacher speaks the student's tokenizer and is evaluated in it
        assert "teacher (OMP transplant)" in models and art.tokens is not None
    if method == "alm":  # different vocabularies: no agreement, no token view, teacher on its own tokens
        assert art.summary["teacher_vocab"] != art.summary["student_vocab"] and art.tokens is None
        assert art.eval["agreement"].isna().all() if "agreement" in art.eval else True
    if method == "ddk":
        mix = art.mixture
        assert sorted(mix["step"].unique().tolist()) == [0, 4, 8]
        assert np.allclose(mix.groupby("step")["weight"].sum(), 1.0)
        assert np.allclose(mix[mix["step"] == 0]["weight"], 1 / mix["domain"].nunique())
    else:
        assert art.mixture is None
    if extra.get("topk"):
        assert art.summary["topk_cache_bytes"] > 0 and (tmp_path / "topk" / "values.npy").is_file()


def test_different_vocabularies_without_a_cross_tokenizer_method_stop_before_a_run(store):
    with pytest.raises(ConfigError, match=r"params.method: the teacher and the student have different "
                                          r"vocabularies.*ALM \('alm'.*'omp'") as e:
        kdlab.submit("lm_distill", store, **{**TINY, "student_vocab": 384, "method": "forward_kl"})
    assert {"alm", "omp"} <= set(e.value.issues[0].choices)
    with pytest.raises(ConfigError, match=r"params.topk: method 'taid' cannot train from a cached top-k "
                                          r"teacher; methods that can: .*forward_kl"):
        kdlab.submit("lm_distill", store, **{**TINY, "method": "taid", "topk": 8})
    with pytest.raises(ConfigError, match=r"params.method.params.beta"):
        kdlab.submit("lm_distill", store, **{**TINY, "method": "gjsd", "method_params": {"beta": 2}})
    with pytest.raises(UnknownNameError, match=r"params.method: unknown LM distillation method 'fwd_kl'. Did you "
                                               r"mean 'forward_kl'.*Valid: alm"):
        kdlab.submit("lm_distill", store, **{**TINY, "method": "fwd_kl"})
    assert store.list_runs().empty  # nothing was created


def test_a_users_folder_skips_binary_and_non_utf8_files_with_a_count(tmp_path, store):
    folder = tmp_path / "texts"
    (folder / "notes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "return", "value", "(", ")", ":", "\n"]
    for i in range(12):
        (folder / "notes" / f"{i}.txt").write_text(" ".join(rng.choice(words, 600)))
    (folder / "notes" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "notes" / "latin1.txt").write_bytes("café crème brûlée".encode("latin-1"))
    summary, art = run_foreground(tmp_path / "run", corpus="folder", path=str(folder), teacher_vocab=300)
    assert art.summary["skipped"] == {"binary": 1, "not utf-8": 1}
    assert np.isfinite(summary["test/bpb/student"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blob.bin").write_bytes(b"\x00\x01" * 100)
    with pytest.raises(ConfigError, match=r"empty.*1 binary"):
        kdlab.submit("lm_distill", store, **{**TINY, "corpus": "folder", "path": str(empty)})
    assert store.list_runs().empty


def test_the_lm_job_loads_without_the_text_extra_and_says_how_to_install_it(monkeypatch):
    import sys

    from kdlab.jobs import lm_distill

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers -> ModuleNotFoundError
    for name in [m for m in sys.modules if m.startswith("kdlab.text")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError, match=r"pip install 'kdlab\[text\]'"):
        lm_distill._text_module()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_killed_run_resumes_from_its_last_checkpoint(store):
    params = {**TINY, "steps": 60, "checkpoint_every": 10, "eval_every": 0}
    h = kdlab.submit("lm_distill", store, device="cpu", **params)
    wait_for(lambda: (h.run_dir / "checkpoint" / "train_state.pt").is_file() and
             torch.load(h.run_dir / "checkpoint" / "train_state.pt", weights_only=True)["step"] >= 20,
             timeout=300, what="a checkpoint at step 20")
    os.killpg(h.record.pid, signal.SIGKILL)
    wait_for(lambda: h.status == "interrupted", timeout=20, what="interrupted")
    saved = torch.load(h.run_dir / "checkpoint" / "train_state.pt", weights_only=True)["step"]
    assert h.resume().wait(timeout=300) == "completed", h.record.error
    assert any(f"resuming after step {saved}" in m for m in h.logs()["message"])
    steps = h.metrics(kind="step", keys=["loss/ce"])["step"].tolist()
    assert steps == list(range(1, 61))  # the rows written after the checkpoint were replaced, none doubled
    assert isinstance(load_lm_artifacts(h.run_dir).eval, pd.DataFrame)


def test_the_cli_lists_the_language_model_methods_and_the_job_parameters(capsys):
    from kdlab.cli import main

    main(["methods", "--text"])
    out = capsys.readouterr().out
    for name in ("forward_kl", "reverse_kl", "gjsd", "skew_kl", "tv", "taid", "seq_kd", "on_policy", "ddk", "alm",
                 "omp"):
        assert f"\n{name} " in out
    main(["jobs", "lm_distill"])
    out = capsys.readouterr().out
    assert "student_vocab" in out and "topk" in out and "method_params" in out


def test_every_domain_gets_validation_text_without_losing_or_leaking_a_document():
    from kdlab.jobs.lm_run import _with_validation
    from kdlab.text import load_corpus

    logged = []
    splits = load_corpus("stdlib", max_domains=6, max_bytes=500_000).split(val=0.1, test=0.1)
    out = _with_validation(SimpleNamespace(log=logged.append), splits)
    names = lambda c: sorted(d.name for d in c.docs)  # noqa: E731
    assert names(out.test) == names(splits.test)  # test text never moves
    assert sorted(names(out.train) + names(out.val)) == sorted(names(splits.train) + names(splits.val))
    assert not set(names(out.train)) & set(names(out.val))
    for domain, docs in splits.train.by_domain().items():
        if len(docs) >= 3:
            assert domain in out.val.by_domain()
    assert logged and "moved to the validation split" in logged[0]


def test_the_mixture_parameter_reaches_the_training_loop():
    from kdlab.jobs.lm_run import _config

    job = get_job("lm_distill")
    p = job.check(check_kind_params("lm_distill", {**TINY, "mixture": "uniform"}), None)
    assert _config(p, "cpu").mixture == "uniform"
    p = job.check(check_kind_params("lm_distill", {**TINY, "method": "ddk", "mixture": "uniform"}), None)
    assert _config(p, "cpu").mixture == "ddk"  # DDK starts uniform and follows the gap
    with pytest.raises(ConfigError, match=r"params.mixture: 'zipf' is not one of \['natural', 'uniform'\]"):
        check_kind_params("lm_distill", {"mixture": "zipf"})


def test_a_teacher_folder_that_cannot_be_loaded_stops_before_a_run(tmp_path, store):
    with pytest.raises(ConfigError, match=r"params.teacher_path: .*nope' is not a causal-LM folder: it does not exist"):
        kdlab.submit("lm_distill", store, **{**TINY, "teacher_path": str(tmp_path / "nope")})
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no \*\.safetensors weights, no tokenizer.json; save one with"):
        kdlab.submit("lm_distill", store, **{**TINY, "teacher_path": str(half)})
    assert store.list_runs().empty
