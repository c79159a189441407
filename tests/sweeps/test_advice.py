"""Advice from history: methods ranked for a new spec by the finished trials of earlier sweeps, nearer sweeps
weighing more, with the evidence each row rests on."""
from __future__ import annotations

import pytest

from kdlab.sweeps.advice import COLUMNS, SHARED, advise, similarity
from kdlab.sweeps.result import SweepResult, Trial, save_sweep


def _spec(data: str, student_width: int) -> dict:
    return {"name": "s", "data": {"name": data}, "teacher": {"name": "convnet"},
            "student": {"name": "mlp", "params": {"width": student_width}}, "method": {"name": "kd"}}


def _sweep(store, spec: dict, values: dict[str, list[float]]) -> str:
    """A finished sweep in ``store`` whose complete trials reached ``values`` per method."""
    rid = store.create_run({"kind": "sweep", "params": {"spec": spec, "space": {"method.name": list(values)}}},
                           status="completed")
    trials, n = [], 0
    for method, vals in values.items():
        for v in vals:
            trials.append(Trial(n, {"method.name": method, "optim.lr": 0.01 * (n + 1)}, "complete", v,
                                [[1, v]], run_id=f"r{n}"))
            n += 1
    trials.append(Trial(n, {"method.name": "nd"}, "pruned", 0.99, [[1, 0.99]]))  # pruned: no evidence
    save_sweep(SweepResult(rid, "optuna", "tpe", "none", "val/acc", "maximize", n + 1, {}, spec, trials),
               store.run_dir(rid))
    return rid


def test_no_history_gives_an_empty_table(store):
    table = advise(store, _spec("digits", 64))
    assert table.empty and list(table.columns) == COLUMNS


def test_methods_ranked_by_their_standing_in_the_nearest_sweeps(store):
    near = _sweep(store, _spec("mnist5k", 256), {"kd": [0.90, 0.94], "dist": [0.95], "dkd": [0.80]})
    far = _sweep(store, _spec("digits", 32), {"kd": [0.99], "dist": [0.70], "dkd": [0.60]})
    table = advise(store, _spec("mnist5k", 256))
    assert list(table["method"]) == ["dist", "kd", "dkd"]  # the near sweep (4 shared features) decides
    row = table.set_index("method").loc["kd"]
    w_near, w_far = 4.0 ** 4, 4.0 ** 2  # x4 per shared feature; the far sweep shares the teacher and student names
    assert row["predicted"] == pytest.approx((w_near * 0.94 + w_far * 0.99) / (w_near + w_far))
    assert row["trials"] == 3 and row["best_seen"] == 0.94 and sorted(row["sweeps"]) == sorted([near, far])
    assert row["best_params"] == {"optim.lr": 0.02}  # kd's best trial of the nearest sweep
    assert row["similarity"] == 1.0 and "shares data mnist5k" in row["note"]
    assert row["standing"] == pytest.approx((w_near * (0.94 - 0.80) / 0.15 + w_far * 1.0) / (w_near + w_far))
    assert list(table.index) == [0, 1, 2]
    assert "nd" not in set(table["method"])  # only pruned: not evidence
    # from the far sweep's side the order flips
    assert list(advise(store, _spec("digits", 32))["method"]) == ["kd", "dist", "dkd"]
    assert list(advise(store, _spec("mnist5k", 256), exclude=(near,))["method"]) == ["kd", "dist", "dkd"]
    note = advise(store, _spec("digits", 32), exclude=(far,)).loc[0, "note"]
    assert "teacher convnet, student mlp" in note and "data" not in note and "width" not in note


def test_similarity_counts_shared_features():
    a = {"data": "mnist5k", "teacher": "convnet", "student": "mlp", "width": 256}
    assert similarity(a, a) == SHARED ** 4
    assert similarity(a, {**a, "data": "digits", "width": 64}) == SHARED ** 2
    assert similarity(a, {"data": None}) == 1.0


def _sweep_min(store, spec: dict, values: dict[str, list[float]]) -> str:
    rid = _sweep(store, spec, values)
    from kdlab.sweeps.result import read_sweep

    r = read_sweep(store.run_dir(rid))
    r.direction, r.metric = "minimize", "val/loss"
    save_sweep(r, store.run_dir(rid))
    return rid


def test_a_minimising_sweep_ranks_the_lowest_first_and_ties_keep_the_first(store):
    _sweep_min(store, _spec("digits", 64), {"kd": [0.5, 0.3, 0.3], "dist": [0.2], "dkd": [0.9]})
    table = advise(store, _spec("digits", 64)).set_index("method")
    assert list(table.index) == ["dist", "kd", "dkd"]
    assert table.loc["dist", "standing"] == 1.0 and table.loc["dkd", "standing"] == 0.0
    assert table.loc["kd", "standing"] == pytest.approx((0.9 - 0.3) / (0.9 - 0.2))
    assert table.loc["kd", "best_params"] == {"optim.lr": 0.02}  # the first of two equal trials


def test_one_method_sweeps_and_unfinished_sweeps(store):
    store.create_run({"kind": "sweep", "params": {"spec": _spec("digits", 64), "space": {"optim.lr": [0.1]}}})
    _sweep(store, _spec("digits", 64), {"kd": [0.7]})
    _sweep(store, _spec("digits", 64), {"kd": [0.9]})  # equally near: best_seen is the better one
    row = advise(store, {"name": "s", "data": {"name": "digits"}}).set_index("method").loc["kd"]
    assert row["standing"] == 1.0 and row["best_seen"] == 0.9 and row["trials"] == 2
    assert "width" not in row["note"] and "teacher" not in row["note"]  # features the spec leaves out are not shared
