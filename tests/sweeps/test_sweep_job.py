"""The sweep job end to end on the real run store: trials are training runs of the store grouped under the sweep,
the objective is each run's best validation accuracy, pruned trials stop early, and the CLI prints the winner."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml
from runs_helpers import tiny_spec

import kdlab
from kdlab.cli import main
from kdlab.runs.spec import load_spec
from kdlab.sweeps.optuna_engine import sampler_of
from kdlab.sweeps.space import apply_values, check_space

SPACE = {"method.name": ["kd", "dist"], "optim.lr": [0.1, 0.05, 1e-5]}  # the grid runs kd first; 1e-5 learns nothing
SPEC = tiny_spec(epochs=6, n_train=3000, width=128)  # epochs long enough for the pruner to act between them


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 6-trial grid sweep (2 at once, successive halving) of a tiny spec: kd at lr 1e-5 (trial 2) starts once
    trials 0 and 1 have reported epoch 1 and is below them there, so it is pruned."""
    store = kdlab.open_store(tmp_path_factory.mktemp("sweep") / "store")
    h = kdlab.sweep(SPEC, SPACE, trials=10, store=store, sampler="grid", pruner="halving", name="tiny sweep")
    assert h.wait(timeout=240) == "completed", (h.record.error, h.record.traceback)
    return store, h


def test_trials_are_store_runs_grouped_under_the_sweep(swept):
    store, h = swept
    result = h.result()
    assert result.done and len(result.trials) == 6 and [t.number for t in result.trials] == list(range(6))
    runs = {r.id: r for r in store.records() if f"sweep:{h.id}" in r.tags}
    assert set(runs) == {t.run_id for t in result.trials}
    for t in result.trials:
        run = runs[t.run_id]
        assert run.name == f"tiny sweep #{t.number}" and f"trial:{t.number}" in run.tags
        spec = load_spec(run.spec)
        assert spec.method.name == t.params["method.name"] and math.isclose(spec.optim.lr, t.params["optim.lr"])
        assert spec.method.params == load_spec({**tiny_spec(), "method": {"name": spec.method.name}}).method.params
        hist = store.history(t.run_id)["val/acc"]
        assert [[e, v] for e, v in zip(hist.index, hist, strict=True)] == t.curve  # the curve is the run's
        if t.state == "complete":
            assert run.status == "completed" and t.value == max(hist) and len(hist) == 6
        else:
            assert t.state == "pruned" and run.status == "cancelled" and "pruned" in run.tags
            assert len(hist) < 6
    best = result.best
    assert best.value == max(t.value for t in result.trials if t.state == "complete")
    assert h.record.summary["best/value"] == best.value and h.record.summary["trials"] == 6


def test_a_grid_runs_each_configuration_once_in_order(swept):
    _, h = swept
    result = h.result()
    assert result.n_trials == 6  # 10 asked, the grid has 6
    assert [t.params for t in result.trials] == check_space(SPACE, SPEC).grid()
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert 2 in {t.number for t in pruned} and result.trials[2].note.startswith("pruned after epoch ")
    assert all(t.value is not None for t in result.trials)


def test_tpe_starts_with_the_seeded_draws():
    space = check_space({"method.params.temperature": {"low": 1.0, "high": 8.0}}, tiny_spec())
    draws = [space.suggest(optuna.create_study(sampler=sampler_of("tpe", 3)).ask()) for _ in range(2)]
    assert draws[0] == draws[1] != space.suggest(optuna.create_study(sampler=sampler_of("tpe", 4)).ask())


def test_best_spec_and_the_cli(swept, capsys):
    store, h = swept
    result = h.result()
    assert main(["sweep", "best", h.id, "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# best of sweep {h.id}: trial {result.best.number}")
    printed = yaml.safe_load(out)
    assert printed == result.best_spec() == apply_values(result.base_spec, result.best.params)
    assert load_spec(printed).to_dict() == store.get_run(result.best.run_id).spec  # the winning run's own spec
    assert main(["sweep", "best", "nope", "--store", str(store.root)]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
    assert main(["sweep", "best", result.best.run_id, "--store", str(store.root)]) == 2  # a trial, not the sweep
    assert "is a train run, not a sweep" in capsys.readouterr().err


def test_cli_launch_refuses_a_bad_space(tmp_path, capsys, store):
    spec, space = tmp_path / "spec.yaml", tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec()))
    space.write_text("method.params.temperature: {low: 1, high: 1000}\n")
    assert main(["sweep", str(spec), "--space", str(space), "--store", str(store.root)]) == 2
    assert "params.space.method.params.temperature: 1000" in capsys.readouterr().err
    assert store.list_runs().empty


def test_the_sweep_takes_no_slot(swept):
    store, h = swept
    starts = sorted((r.started, r.finished) for r in store.records() if f"sweep:{h.id}" in r.tags)
    most = max(sum(s <= t < f for s, f in starts) for t, _ in starts)
    assert most == 2  # two trials at once although the sweep itself was running (2 slots)
