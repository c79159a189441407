"""Report section "sweeps": a sweep run's folder becomes its figures (trials, curves, parallel coordinates,
importances), its best spec and its trial table, every string from the sweep escaped; other runs add nothing."""
from __future__ import annotations

from kdlab.report import build, report_figures
from kdlab.report.runs import RunData
from kdlab.report.sweeps import sweeps_section
from kdlab.sweeps.result import SweepResult, Trial, save_sweep

EVIL = "<script>alert('x')</script>"


def sweep(n: int = 6) -> SweepResult:
    """``n`` trials over kd/dkd (the last pruned after one epoch), trial 2 the best."""
    trials = [Trial(i, {"method.name": ["kd", "dkd"][i % 2], "optim.lr": 0.01 * (i + 1)}, "complete",
                    0.5 + 0.1 * (i == 2) + 0.01 * i, [[1, 0.4], [2, 0.5 + 0.1 * (i == 2) + 0.01 * i]], f"r{i}")
              for i in range(n)]
    trials[-1].state, trials[-1].value, trials[-1].curve = "pruned", None, [[1, 0.3]]
    return SweepResult("sw1", "optuna", "tpe", "median", "val/acc", "maximize", n, {"method.name": ["kd", "dkd"]},
                       {"name": EVIL, "method": {"name": "kd"}, "optim": {"epochs": 2, "lr": 0.1}}, trials,
                       importances={"optim.lr": 0.7, "method.name": 0.3}, done=True)


def test_sweep_run_adds_its_figures_best_spec_and_table_escaped(tmp_path):
    save_sweep(sweep(), tmp_path / "run")
    run = RunData(name=EVIL, spec={"kind": "sweep", "params": {"trials": 6}}, history=[], folder=tmp_path / "run")
    section = sweeps_section(run)
    kinds = [k for k, _t, _f in section]
    assert kinds == ["sweep-trials", "sweep-curves", "sweep-parallel", "sweep-importances", "sweep-best-spec",
                     "sweep-trials-table"]
    ids = [f.id for f in report_figures([run]).per_run[0]]
    assert [i for i in ids if "-sweep-" in i] == [f"kdlab-run0-{k}" for k in kinds]
    figs = dict((k, f) for k, _t, f in section)
    assert "trial #2, val/acc 0.62" in figs["sweep-best-spec"].layout.title.text
    card = figs["sweep-best-spec"].data[0].cells.values[0][0]
    assert "lr:\u00a00.03" in card and "&lt;script&gt;" in card  # the best trial's lr; the name escaped
    assert list(figs["sweep-trials-table"].data[0].cells.values[1]) == ["complete"] * 5 + ["pruned"]
    html = build([run], tmp_path / "r.html")
    assert EVIL not in html and "<script>alert" not in html


def test_other_runs_add_nothing(tmp_path):
    assert sweeps_section(RunData(name="plain", folder=tmp_path)) == []
    assert sweeps_section(RunData(name="no folder")) == []
