"""The Sweeps page: the component follows a sweep's file as it changes (counts, best, table, figures, best spec) and
says why a launch is refused; in a real browser, a saved sweep's pruned rows are grey, and a sweep launched from
the page's form (3 trials of a tiny MLP on digits) is followed live to its end with the figures of its saved
trials and its best spec."""
from __future__ import annotations

import os

import pytest
import yaml
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

from kdlab.sweeps.result import SweepResult, Trial, read_sweep, save_sweep

METHODS = {"kd": "temperature", "dkd": "beta", "dist": "tau", "nd": "nd_weight"}
SPACE = {"method.name": list(METHODS), "optim.lr": {"low": 0.01, "high": 0.2, "log": True},
         "method.params": {m: {p: {"low": 1, "high": 8}} for m, p in METHODS.items()}}
BASE = {"name": "tiny", "data": {"name": "digits"}, "teacher": {"name": "mlp"}, "student": {"name": "mlp"},
        "method": {"name": "kd"}, "optim": {"epochs": 3}}


def saved_sweep(n: int) -> SweepResult:
    """``n`` trials over four methods: every 4th from #3 pruned after one epoch, #5 failed, the last running."""
    trials = []
    for i in range(n):
        m = list(METHODS)[i % 4]
        top = 0.6 + 0.03 * ((7 * i) % 11)
        curve = [[e, round(top * (1 - 0.5 ** e), 4)] for e in (1, 2, 3)]
        state = "failed" if i == 5 else "running" if i == n - 1 else "pruned" if i % 4 == 3 else "complete"
        curve = curve[:1] if state in ("pruned", "failed") else curve[:2] if state == "running" else curve
        trials.append(Trial(i, {"method.name": m, "optim.lr": 0.01 * (1 + i % 5), f"method.params.{METHODS[m]}":
                                1.0 + i % 7}, state, curve[-1][1] if state == "complete" else None, curve, f"r{i}"))
    return SweepResult("s", "optuna", "tpe", "median", "val/acc", "maximize", n + 2, SPACE, BASE, trials,
                       importances={"optim.lr": 0.6, "method.name": 0.4})


def sweep_run(store, n: int, status: str = "running") -> str:
    """A sweep run of ``store`` whose file holds ``saved_sweep(n)``."""
    rid = store.create_run({"kind": "sweep", "params": {"spec": BASE, "space": SPACE, "trials": n + 2}},
                           name="saved sweep", status=status)
    save_sweep(saved_sweep(n), store.run_dir(rid))
    return rid


def test_the_component_follows_the_sweep_file_and_refuses_bad_forms(tmp_path):
    from kdlab.runs.store import open_store
    from kdlab.ui.sweeps import Sweeps

    store = open_store(tmp_path / "home")
    rid = sweep_run(store, 8)
    page = Sweeps(store)  # opens the newest sweep
    assert page.run_id == rid and page.picker.value == rid
    assert page.counts.object == "5 complete · 1 pruned · 1 failed · 1 running (of 10)"
    best = max((t for t in saved_sweep(8).trials if t.state == "complete"), key=lambda t: t.value)
    assert page.best.object == f"**best: #{best.number} {best.params['method.name']}, val/acc {best.value:.4g} " \
                               f"(run r{best.number})**"
    assert list(page.table.value["state"]) == [t.state for t in saved_sweep(8).trials]
    assert {k for k, p in page.panes.items() if p.visible} == {"trials", "curves", "parallel", "importances",
                                                               "advice"}
    # advice for its base spec, from the trials of the store's sweeps (this one)
    done = {t.params["method.name"] for t in saved_sweep(8).trials if t.state == "complete"}
    assert set(page.advice["method"]) == done and page.panes["advice"].object.data[0].y[0].startswith(
        page.advice["method"][0])
    assert page.advice_line.object.startswith(f"try {page.advice['method'][0]} first: predicted ")
    assert yaml.safe_load(page.best_spec.object.split("<pre")[1].split(">", 1)[1].split("</pre>")[0]) == \
        read_sweep(store.run_dir(rid)).best_spec()
    # the file grows (as the job rewrites it): the next tick redraws, an unchanged file is not read again
    save_sweep(saved_sweep(12), store.run_dir(rid))
    os.utime(store.run_dir(rid) / "artifacts" / "sweep.json", (1e9, 1e9 + 5))
    page.tick()
    assert page.counts.object.startswith("8 complete · 2 pruned") and len(page.table.value) == 12
    assert page.update() is False
    page.method.value = "dkd"  # parallel coordinates of one method: its own parameter gets an axis
    assert [d.label for d in page.panes["parallel"].object.data[0].dimensions] == ["lr (log)", "beta", "val/acc"]
    assert page.launch(spec="name: [", space="{}") is None
    assert page.form_status.object.startswith("cannot start: spec: not valid YAML at line 1")
    assert page.launch(space={"method.name": ["<b>nope</b>"]}) is None and len(store.jobs("sweep")) == 1
    assert "&lt;b&gt;nope&lt;/b&gt;" in page.form_status.object and "<b>nope" not in page.form_status.object


def settled(page, timeout_s: float = 15.0) -> None:
    """Wait until every shown figure of the page is drawn at its pane's width (the page's width: panes stretch; a
    pane added to a laid-out page may be drawn at a provisional size first)."""
    import time

    plots = page.locator(".kdlab-sweeps .js-plotly-plot")
    deadline = time.monotonic() + timeout_s
    while True:  # every figure spans the page (its pane stretches), as drawn and as laid out
        widths = plots.evaluate_all("els => els.filter(el => el.getClientRects().length).map(el => "
                                    "[el._fullLayout ? el._fullLayout.width : 0, el.getBoundingClientRect().width, "
                                    "window.innerWidth])")  # the shown ones (a hidden pane has no box)
        if all(min(w, box) > 0.8 * page_w for w, box, page_w in widths):
            return
        assert time.monotonic() < deadline, f"figures not drawn at their panes' widths: {widths}"
        page.wait_for_timeout(200)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweeps_page_launches_and_follows_a_sweep(browser, shots, tmp_path):
    from kdlab.runs.store import open_store

    home = tmp_path / "home"
    store = open_store(home)
    sweep_run(store, 16, status="completed")
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Sweeps").first.click(timeout=60_000)
        expect(page.locator(".kdlab-sweeps-counts")).to_contain_text("11 complete · 3 pruned · 1 failed",
                                                                     timeout=30_000)
        table = page.locator(".kdlab-sweeps-table")
        expect(table.locator(".tabulator-row").first).to_be_visible(timeout=30_000)
        rows = table.locator(".tabulator-row")
        assert rows.count() == 16
        colors = [rows.nth(i).locator(".tabulator-cell[tabulator-field=state]").evaluate(
            "el => [el.innerText, getComputedStyle(el).color]") for i in range(16)]
        assert [s for s, c in colors if c == "rgb(158, 158, 158)"] == ["pruned"] * 3  # pruned rows greyed
        assert [s for s, c in colors if c == "rgb(192, 57, 43)"] == ["failed"]
        trials = page.locator(".kdlab-sweeps-trials .js-plotly-plot").first
        trials.wait_for(timeout=30_000)
        grey = trials.evaluate("el => el.data.filter(t => t.meta && t.meta.state == 'pruned')[0].x")
        assert grey == [3, 7, 11]
        settled(page)
        page.screenshot(path=str(shots / "sweeps-saved.png"), full_page=True)
        # a real sweep from the form: 3 trials, 2 epochs (the default base spec), random sampler
        page.locator(".kdlab-sweeps-form .card-header").first.click()
        trials_in = page.locator(".kdlab-sweeps-trials input").first
        trials_in.fill("3")
        trials_in.press("Enter")
        page.locator(".kdlab-sweeps-launch button").click(timeout=30_000)
        expect(page.locator(".kdlab-sweeps-form-status")).to_contain_text("launched sweep", timeout=30_000)
        expect(page.locator(".kdlab-sweeps-status")).to_contain_text("running", timeout=30_000)
        expect(page.locator(".kdlab-sweeps-status")).to_contain_text("completed", timeout=180_000)
        (job,) = [r for r in store.jobs("sweep") if r.name != "saved sweep"]
        assert job.spec["params"]["trials"] == 3 and job.status == "completed"
        result = read_sweep(store.run_dir(job.id))
        assert len(result.trials) == 3 and result.best is not None
        expect(page.locator(".kdlab-sweeps-counts")).to_contain_text(f"{result.counts()['complete']} complete")
        # the page's next poll after the sweep ended redraws the table with every trial (it may lag the status line)
        expect(page.locator(".kdlab-sweeps-table .tabulator-row")).to_have_count(3, timeout=30_000)
        states = page.locator(".kdlab-sweeps-table .tabulator-cell[tabulator-field=state]")
        expect(states).to_have_text([t.state for t in result.trials], timeout=30_000)  # the final states
        curves = page.locator(".kdlab-sweeps-curves .js-plotly-plot").first
        curves.wait_for(timeout=30_000)
        drawn = curves.evaluate("el => el.data.map(t => [t.meta.trial, Array.from(t.y)])")
        assert sorted(drawn) == sorted([t.number, [v for _, v in t.curve]] for t in result.trials)
        spec = page.locator(".kdlab-sweeps-best-spec pre").first.inner_text()
        assert yaml.safe_load(spec) == result.best_spec()
        # advice for the new sweep's base spec: its methods and the saved sweep's, the best predicted first
        expect(page.locator(".kdlab-sweeps-advice-line")).to_contain_text("first: predicted ", timeout=30_000)
        bars = page.locator(".kdlab-sweeps-advice .js-plotly-plot").first
        bars.wait_for(timeout=30_000)
        methods = [y.split(" (")[0] for y in bars.evaluate("el => el.data[0].y")]
        assert set(methods) == set(METHODS) - {"nd"}  # nd trials were all pruned
        settled(page)
        page.screenshot(path=str(shots / "sweeps.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)


def test_the_notebook_widget_draws_the_trials_while_the_sweep_runs(tmp_path):
    from kdlab.runs.store import open_store
    from kdlab.ui.sweeps import SweepWidget

    store = open_store(tmp_path / "home")
    rid = sweep_run(store, 8, status="queued")  # a sweep not yet ended (queued: no worker to find dead)
    ui = SweepWidget(store)
    ui.follow(rid)
    outputs = ui.out.outputs
    assert len(outputs) == 7  # counts and best, trials table, 4 figures, best spec
    assert "5 complete · 1 pruned" in outputs[0]["data"]["text/html"]
    save_sweep(saved_sweep(12), store.run_dir(rid))
    os.utime(store.run_dir(rid) / "artifacts" / "sweep.json", (1e9, 1e9 + 5))
    ui._live_at = 0.0  # the next poll is due
    assert ui.update() is False and "8 complete · 2 pruned" in ui.out.outputs[0]["data"]["text/html"]
