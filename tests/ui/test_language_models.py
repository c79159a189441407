"""The Language models page headless: its form (the job's declared parameters, plus the method and its JSON
parameters) launches an ``lm_distill`` run done by a worker; once done the run is picked and its views drawn from
what it saved; the token view of a typed text (tags, ampersands, quotes) is computed off the caller's thread, equals
the plain ``token_divergence`` call and is escaped; bad method parameters are said on the page, nothing launched."""
from __future__ import annotations

import time

import numpy as np
import pytest

from kdlab.runs.background import RunHandle
from kdlab.ui.language_models import LanguageModelsPage, token_table

TINY = {"max_mb": 0.3, "max_domains": 4, "teacher_layers": 2, "teacher_width": 64, "teacher_vocab": 512,
        "teacher_steps": 30, "student_width": 32, "steps": 20, "batch_size": 8, "block_size": 32, "eval_every": 10,
        "eval_kb": 4}
EVIL = "x = '<script>alert(1)</script>' & \"y\"\n\tz"


@pytest.mark.timeout(240)
def test_page_launches_shows_and_recomputes_the_token_view(store, tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    page = LanguageModelsPage(store)
    assert page.run_id is None and page.recompute_button.disabled and "no finished" in page.info.object
    page.method_params.value = "{beta: 1"
    assert page.launch(**TINY) is None and "not JSON" in page.job.status.object and not store.jobs("lm_distill")
    task = page.launch(method="gjsd", method_params={"beta": 0.3}, **TINY)
    params = store.get_run(task.id).spec["params"]
    assert params["method"] == "gjsd" and params["method_params"]["beta"] == 0.3 and params["steps"] == 20
    assert RunHandle(store, task.id).wait(timeout=200) == "completed", task.record.error
    page.tick()
    assert page.run_id == task.id and page.job.panes["bpb"].visible and "done" in page.job.status.object
    assert not page.live.visible  # done: the curves are among the run's views
    shown = {k for k, p in page.panes.items() if p.visible}
    assert shown == {"bpb", "curves", "tokens", "samples"}  # no mixture: not a DDK run
    assert "method gjsd" in page.info.object and "bits/byte" in page.info.object

    fut = page.recompute(EVIL)
    deadline = time.monotonic() + 60
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    page.tick()
    assert "tokens; mean KL" in page.token_status.object and not page.recompute_button.disabled
    fig = page.panes["tokens"].object
    want = token_table(store.run_dir(task.id), EVIL)
    assert np.allclose(fig.data[0].marker.color, want["kl"]) and "your text" in fig.layout.title.text
    labels = "".join(fig.data[0].text)
    assert "<" not in labels and "&lt;" in labels and "·" in labels  # escaped; spaces drawn
    assert all(isinstance(c[1], float) for c in fig.data[0].customdata)

    again = LanguageModelsPage(store)  # a new session: the run is there, nothing new launched
    assert again.run_id == task.id and again.method.value == "gjsd" and len(store.jobs("lm_distill")) == 1


def test_the_generic_job_form_holds_a_dict_parameter():
    import panel as pn

    from kdlab.ui.job_panel import params_form

    form = params_form("lm_distill")
    assert type(form.param["method_params"]).__name__ == "Dict" and form.method_params == {}
    form.method_params = {"beta": 0.25}
    assert pn.Param(form) is not None and form.method_params == {"beta": 0.25}
