"""The search space: its form, its validation against the spec's declared bounds (before any trial), the
configurations it draws and how they are applied to the base spec."""
from __future__ import annotations

import math

import optuna
import pytest

import kdlab
from kdlab.errors import ConfigError
from kdlab.runs.spec import load_spec
from kdlab.sweeps.space import apply_values, check_space, parse_space

BASE = {"name": "b", "data": {"name": "digits"}, "teacher": {"name": "mlp", "params": {"width": 16}},
        "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": "kd", "params": {"temperature": 2.0}},
        "optim": {"epochs": 2}}
SPACE = {"method.name": ["kd", "dkd", "dist", "nd"],
         "method.params": {"kd": {"temperature": {"low": 1, "high": 8}, "kd_weight": {"low": 0.25, "high": 4,
                                                                                        "log": True}},
                           "dist": {"tau": {"low": 1, "high": 8}}},
         "optim.lr": {"low": 0.01, "high": 0.2, "log": True},
         "student.params.width": {"low": 16, "high": 64, "step": 16}}


def test_dims_in_drawing_order_with_types_from_the_spec():
    space = check_space({"optim.epochs": {"low": 1, "high": 4}, **SPACE}, BASE)
    assert space.dims[0].path == "method.name"  # drawn first: other fields depend on it
    by = {d.name: d for d in space.dims}
    assert by["optim.epochs"].integer and by["student.params.width"].integer  # int fields of the spec
    assert not by["kd:method.params.temperature"].integer and not by["optim.lr"].integer  # floats, even from ints
    assert by["kd:method.params.temperature"].method == "kd" and by["optim.lr"].log
    assert space.methods == ("kd", "dkd", "dist", "nd")


@pytest.mark.parametrize("space, where, says", [
    ({}, "space", "empty"),
    ({"optim.lrr": [0.1]}, "space.optim.lrr", "did you mean 'lr'"),
    ({"method.params.temperature": {"low": 1, "high": 200}}, "space.method.params.temperature", "[0.05, 100.0]"),
    ({"optim.lr": {"low": -1.0, "high": 0.1}}, "space.optim.lr", "-1.0"),
    ({"method.name": ["kd", "dist"], "method.params.temperature": [2.0]}, "space.method.params.temperature",
     "method 'dist'"),
    ({"method.name": ["kd", "nope"]}, "space.method.name", "unknown method 'nope'"),
    ({"method.name": ["kd"], "method.params": {"dist": {"tau": [2.0]}}}, "space.method.params", "['dist']"),
    ({"method.params": {"dist": {"tau": [2.0]}}}, "space.method.params", "fixed to 'kd'"),
    ({"optim.lr": {"low": 0.2, "high": 0.1}}, "space.optim.lr", "below high"),
    ({"optim.lr": {"low": 0.0, "high": 0.1, "log": True}}, "space.optim.lr", "low > 0"),
    ({"optim.lr": {"low": 0.1, "high": 0.2, "by": 2}}, "space.optim.lr", "unknown range key"),
    ({"optim.lr": []}, "space.optim.lr", "empty list"),
    ({"optim.epochs": {"low": 1.5, "high": 3}}, "space.optim.epochs", "integer"),
    ({"device": ["cpu"]}, "space.device", "not a configuration"),
    ({"method.params": {"kd": {"temperature": {"low": 1, "high": 1e6}}}, "method.name": ["kd"]},
     "space.method.params.kd.temperature", "outside"),
])
def test_bad_spaces_are_refused_naming_the_field(space, where, says):
    with pytest.raises(ConfigError) as e:
        check_space(space, BASE)
    assert str(e.value).startswith(where + ":") and says in str(e.value)
    assert e.value.issues[0].where == where


def test_a_bad_space_is_refused_before_any_run(store):
    with pytest.raises(ConfigError, match=r"params.space.method.params.temperature: 500"):
        kdlab.sweep(BASE, {"method.params.temperature": {"low": 1, "high": 500}}, trials=3, store=store)
    with pytest.raises(ConfigError, match="params.space: the space is empty"):
        kdlab.sweep(BASE, {}, store=store)
    with pytest.raises(ConfigError, match="params.space.optim.nope"):
        kdlab.sweep(BASE, {"optim.nope": [1]}, store=store)
    assert store.list_runs().empty


def test_apply_values_sets_nested_fields_and_resets_another_methods_params():
    out = apply_values(BASE, {"method.name": "dist", "method.params.tau": 3.0, "student.params.depth": 3})
    assert out["method"] == {"name": "dist", "params": {"tau": 3.0}}  # kd's temperature does not leak into dist
    assert out["student"]["params"] == {"width": 16, "depth": 3}
    assert BASE["method"]["params"] == {"temperature": 2.0} and "depth" not in BASE["student"]["params"]
    same = apply_values(BASE, {"method.name": "kd", "method.params.kd_weight": 2.0})
    assert same["method"]["params"] == {"temperature": 2.0, "kd_weight": 2.0}  # same method: base params kept


def test_every_draw_is_a_valid_spec_within_the_ranges():
    space = check_space(SPACE, BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        values = space.suggest(study.ask())
        method = values["method.name"]
        seen.add(method)
        own = {k for k in values if k.startswith("method.params.")}
        assert own == {"kd": {"method.params.temperature", "method.params.kd_weight"},
                       "dist": {"method.params.tau"}}.get(method, set())
        assert 0.01 <= values["optim.lr"] <= 0.2 and values["student.params.width"] in (16, 32, 48, 64)
        spec = load_spec(apply_values(BASE, values))
        assert spec.method.name == method and spec.student.params["width"] == values["student.params.width"]
        assert space.values_of(space.engine_params(values)) == values
    assert seen == {"kd", "dkd", "dist", "nd"}


def test_grid_enumerates_each_methods_own_product():
    space = check_space({"method.name": ["kd", "dist"], "optim.lr": [0.05, 0.1],
                         "method.params": {"kd": {"temperature": {"low": 1, "high": 4, "step": 1.5}}}}, BASE)
    grid = space.grid()
    assert len(grid) == 2 * 3 + 2  # kd: 2 lr x 3 temperatures; dist: 2 lr
    assert sorted(g["method.params.temperature"] for g in grid if g["method.name"] == "kd") == [1, 1, 2.5, 2.5, 4, 4]
    assert all("method.params.temperature" not in g for g in grid if g["method.name"] == "dist")
    with pytest.raises(ConfigError, match="space.optim.lr: a grid search needs choices or a step"):
        check_space({"optim.lr": {"low": 0.01, "high": 0.1}}, BASE).grid()


def test_parse_space_reads_yaml_files(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optim.lr: {low: 0.01, high: 0.1, log: true}\nmethod.name: [kd, dist]\n")
    space = parse_space(path)
    assert [d.path for d in space.dims] == ["method.name", "optim.lr"]
    assert math.isclose(space.dims[1].high, 0.1)


@pytest.mark.parametrize("space, where, says", [
    ({"optim.lr": {"low": "a", "high": 0.2}}, "space.optim.lr", "low: expected a finite number"),
    ({"optim.lr": {"low": True, "high": 0.2}}, "space.optim.lr", "low: expected a finite number"),
    ({"optim.lr": {"low": 0.1, "high": 0.1}}, "space.optim.lr", "below high"),
    ({"optim.lr": {"low": 0.1, "high": 0.2, "step": 0}}, "space.optim.lr", "step: expected a number > 0"),
    ({"optim.lr": {"low": 0.1, "high": 0.2, "step": True}}, "space.optim.lr", "step: expected a number > 0"),
    ({"method.name": ["kd"], "method.params": {"kd": {}}}, "space.method.params.kd", "non-empty mapping"),
    ({"method.name": ["kd", "dist"], "method.params": {"kd": {"temperature": [2.0]}, "nd": {"temperature": [2.0]}}},
     "space.method.params", "method(s) ['nd'] are not"),
])
def test_more_bad_spaces(space, where, says):
    with pytest.raises(ConfigError) as e:
        check_space(space, BASE)
    assert str(e.value).startswith(where + ":") and says in str(e.value)


def test_messages_name_the_method_only_for_a_shared_field():
    with pytest.raises(ConfigError) as shared:
        check_space({"method.name": ["kd", "dist"], "method.params.temperature": [2.0]}, BASE)
    assert "2.0 (method 'dist') is not valid" in str(shared.value)
    assert "invalid experiment spec" not in str(shared.value)  # the spec's own line, not its title
    with pytest.raises(ConfigError) as own:
        check_space({"method.name": ["kd"], "method.params": {"kd": {"temperature": [500.0]}}}, BASE)
    assert "(method" not in str(own.value) and "500.0 is outside" in str(own.value)


def test_per_method_fields_of_the_fixed_method_and_a_base_without_method():
    space = check_space({"method.params": {"kd": {"temperature": [2.0, 3.0]}}}, BASE)  # kd is the base's method
    assert [d.name for d in space.dims] == ["kd:method.params.temperature"]
    dist = {**BASE, "method": {"name": "dist"}}
    assert [d.name for d in check_space({"method.params": {"dist": {"tau": [2.0]}}}, dist).dims] == [
        "dist:method.params.tau"]
    bare = {k: v for k, v in BASE.items() if k != "method"}
    assert apply_values(bare, {"method.name": "dist", "method.params.tau": 2.0})["method"] == {
        "name": "dist", "params": {"tau": 2.0}}
    assert apply_values(bare, {"method.name": "kd"})["method"] == {"name": "kd", "params": {}}


def test_grid_steps_reach_high_without_overshooting():
    def grid(low, high, step):
        return check_space({"optim.lr": {"low": low, "high": high, "step": step}}, BASE).grid()

    assert [g["optim.lr"] for g in grid(0.1, 0.3, 0.1)] == [0.1, 0.2, 0.3]  # 0.2 / 0.1 is 1.999...: still 3
    assert [g["optim.lr"] for g in grid(2.0, 5.0, 1.5)] == [2.0, 3.5, 5.0]
    assert [g["optim.lr"] for g in grid(2.0, 5.0, 2.0)] == [2.0, 4.0]
    epochs = check_space({"optim.epochs": {"low": 1, "high": 4}}, BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    assert {epochs.suggest(study.ask())["optim.epochs"] for _ in range(40)} == {1, 2, 3, 4}  # every integer


def test_engine_params_keep_only_the_drawn_methods_fields():
    space = check_space({"method.name": ["kd", "nd"], "method.params": {"kd": {"temperature": [2.0]},
                                                                       "nd": {"temperature": [3.0]}}}, BASE)
    assert space.engine_params({"method.name": "kd", "method.params.temperature": 2.0}) == {
        "method.name": "kd", "kd:method.params.temperature": 2.0}
    parsed = parse_space({"optim.lr": {"low": 0.1, "high": 0.2}, "method.name": ["kd"]})
    assert not any(d.integer or d.log for d in parsed.dims)  # decided by check_space, from the spec
