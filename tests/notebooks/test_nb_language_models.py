"""notebooks/06_language_models.ipynb executed headless with tiny parameters (nbclient): an ``lm_distill`` run and a
DDK run launched into a temporary store through the widgets, their views drawn, and the token view of a new text."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TINY = {"max_mb": 1.0, "max_domains": 4, "teacher_layers": 2, "teacher_width": 64, "teacher_vocab": 512,
        "teacher_steps": 30, "student_width": 32, "steps": 20, "batch_size": 8, "block_size": 32, "eval_every": 10,
        "eval_kb": 4}


def test_language_models_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    res = run_notebook(
        "06_language_models.ipynb", tmp_path,
        "{'status': [lm.task.status, ddk.task.status], 'models': sorted(art.eval.model.unique()), "
        "'figures': len(lm.out.outputs), 'ddk_figures': len(ddk.out.outputs), 'live': len(lm.live.outputs), "
        "'steps': sorted(ddk_art.mixture.step.unique().tolist()), 'sums': ddk_art.mixture.groupby('step').weight.sum()"
        ".round(6).unique().tolist(), 'tokens': len(art.tokens), 'view': type(lm.token_view('x = 1 < 2')).__name__, "
        "'label': lm.label.value}",
        timeout=240, method="forward_kl", store_path=str(tmp_path / "store"), text="a < b & 'c'\n", **TINY)
    assert res["status"] == ["completed", "completed"], res
    assert res["models"] == ["no-KD student", "student", "teacher"], res
    assert res["figures"] == 4 and res["ddk_figures"] == 5, res  # bpb, curves, (mixture), tokens, samples
    assert res["live"] == 0 and res["view"] == "Figure" and res["tokens"] > 3, res
    assert res["steps"][0] == 0 and len(res["steps"]) >= 2 and res["sums"] == [1.0], res
    assert res["label"].startswith("done: method forward_kl") and "bits/byte" in res["label"], res
