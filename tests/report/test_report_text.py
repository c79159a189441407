"""Report section "language models": an ``lm_distill`` run folder's bits per byte, token view, DDK mixture, loss
curves and generations become figures of the report, every string from the run escaped; other runs add nothing."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kdlab.jobs.lm_distill import EVAL_FILE, MIXTURE_FILE, SAMPLES_FILE, SUMMARY_FILE, TOKENS_FILE
from kdlab.report import build, report_figures
from kdlab.report.runs import RunData
from kdlab.report.text import lm_section

EVIL = "<script>alert('x')</script>"


def lm_folder(root: Path, mixture: bool = True) -> Path:
    """A run folder as ``lm_distill`` writes it (small, made by hand)."""
    art = root / "artifacts"
    art.mkdir(parents=True)
    rows = [{"model": m, "domain": d, "tokens": 10, "bytes": 30, "nll": 1.0, "bpb": b + i / 10, "ppl": 2.0,
             "agreement": np.nan if m == "teacher" else 0.4, "kl": np.nan if m == "teacher" else 0.2}
            for m, b in (("teacher", 1.0), ("student", 1.4), ("no-KD student", 2.0))
            for i, d in enumerate(["json", EVIL, "all"])]
    pd.DataFrame(rows).to_csv(art / EVAL_FILE, index=False)
    toks = ["def", " f", "(<", "&", "\"'", "\n"]
    pd.DataFrame({"position": range(1, 7), "token": toks, "kl": np.linspace(0, 1, 6), "student_logp": -1.0,
                  "teacher_logp": -0.5, "student_top": "'<b>' 0.3", "teacher_top": "'&' 0.9"}).to_csv(
        art / TOKENS_FILE, index=False)
    if mixture:
        pd.DataFrame({"step": [0, 0, 50, 50], "domain": ["json", EVIL] * 2, "weight": [0.5, 0.5, 0.6, 0.4]}).to_csv(
            art / MIXTURE_FILE, index=False)
    (art / SAMPLES_FILE).write_text(json.dumps([{"prompt": EVIL, "teacher": "a & b", "student": "<i>"}]))
    (art / SUMMARY_FILE).write_text(json.dumps({"params": {"method": "ddk"}, "mode": "ddk"}))
    return root


def metrics() -> pd.DataFrame:
    return pd.DataFrame([{"seq": i, "step": s, "epoch": np.nan, "kind": "step", "key": k, "value": v, "time": 0.0}
                         for i, (s, k, v) in enumerate((s, k, 4.0 / s) for s in (1, 2, 3)
                                                       for k in ("loss/ce", "loss/kd", "loss/total"))])


def test_lm_run_adds_its_views_escaped(tmp_path):
    run = RunData(name="lm-ddk", history=metrics(), folder=lm_folder(tmp_path / "run"))
    kinds = [k for k, _t, _f in lm_section(run)]
    assert kinds == ["lm-bpb", "lm-curves", "lm-mixture", "lm-tokens", "lm-samples"]
    ids = [f.id for f in report_figures([run]).per_run[0]]
    assert [i for i in ids if "-lm-" in i] == [f"kdlab-run0-{k}" for k in kinds]
    assert np.allclose(lm_section(run)[0][2].data[1].y, [1.4, 1.5, 1.6])  # the KD student's numbers
    html = build([run], tmp_path / "r.html")
    assert EVIL not in html and "<script>alert" not in html and "\"<i>\"" not in html
    assert "&lt;script&gt;alert" in html  # shown literally
    assert "KD closed 60%" in html  # all text: no-KD 2.2, KD 1.6, teacher 1.2: (2.2 - 1.6) / (2.2 - 1.2)


def test_other_runs_and_cross_tokenizer_runs(tmp_path):
    assert lm_section(RunData(name="plain", folder=tmp_path)) == []
    assert lm_section(RunData(name="no folder")) == []
    folder = lm_folder(tmp_path / "alm", mixture=False)
    (folder / "artifacts" / TOKENS_FILE).unlink()  # cross-tokenizer runs have no token view
    kinds = [k for k, _t, _f in lm_section(RunData(name="alm", history=[], folder=folder))]
    assert kinds == ["lm-bpb", "lm-samples"]


def test_an_lm_run_gets_no_classifier_parts_and_its_row_names_corpus_method_and_seed(tmp_path):
    from kdlab.report.html import summary_table

    spec = {"kind": "lm_distill", "params": {"corpus": "stdlib", "method": "taid", "seed": 3,
                                             "teacher_arch": "gpt2", "student_arch": "llama"}}
    runs = [RunData(name=f"lm-{i}", spec=spec, history=metrics(), folder=lm_folder(tmp_path / str(i)))
            for i in range(2)]
    figs = report_figures(runs)
    ids = [f.id for f in figs.all()]
    assert not any(re.fullmatch(r"kdlab-run\d+-curves", i) or "val-acc" in i for i in ids)  # no empty accuracy plots
    assert "kdlab-run0-lm-curves" in ids
    row = summary_table(runs).iloc[0]
    assert (row["data"], row["method"], row["seed"], row["teacher"], row["student"]) == \
        ("stdlib", "taid", 3, "gpt2", "llama")
    assert pd.isna(row["epochs"])
