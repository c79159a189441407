"""The experiment spec: validation names the field path and the valid choices, before any work."""
from __future__ import annotations

import json

import pytest

from kdlab.errors import ConfigError
from kdlab.runs.spec import ExperimentSpec, load_spec


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    spec = load_spec({"name": "x", "method": {"name": "kd", "params": {"temperature": 2}}})
    assert spec.method.params == {"ce_weight": 1.0, "kd_weight": 1.0, "temperature": 2.0}
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    again = load_spec(path)
    assert again == spec
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    assert load_spec(tmp_path / "spec.json") == spec
    assert again.digest() == spec.digest()


@pytest.mark.parametrize("bad, path, hint", [
    ({"method": {"name": "kdd"}}, "method", "Did you mean 'kd'"),
    ({"method": {"name": "kd", "params": {"temp": 3}}}, "method", "temperature"),
    ({"method": {"name": "kd", "params": {"temperature": -1}}}, "params.temperature", "outside"),
    ({"method": {"name": "kd", "params": {"temperature": "hot"}}}, "params.temperature", "expected a float"),
    ({"student": {"name": "resnet1000"}}, "student", "Valid:"),
    ({"student": {"name": "mlp", "params": {"width": 0}}}, "params.width", "outside"),
    ({"data": {"name": "imagenet"}}, "data", "mnist5k"),
    ({"data": {"shift": [{"name": "spin"}]}}, "data", "rotate"),
    ({"optim": {"name": "lbfgs"}}, "optim.name", "'sgd', 'adam' or 'adamw'"),
    ({"optim": {"lr": 0}}, "optim.lr", "greater than 0"),
    ({"optim": {"epochs": "ten"}}, "optim.epochs", "integer"),
    ({"device": "tpu"}, "device", "'auto', 'cpu', 'cuda'"),
    ({"optimiser": {}}, "optimiser", "unknown field"),
    ({"teacher": None, "method": {"name": "kd"}}, "teacher", "needs a teacher"),
])
def test_bad_fields_fail_naming_path_and_choices(bad, path, hint):
    with pytest.raises(ConfigError) as err:
        load_spec(bad)
    msg = str(err.value)
    assert path in msg and hint in msg, msg


def test_teacher_free_method_needs_no_teacher():
    spec = load_spec({"teacher": None, "method": {"name": "tf_kd"}})
    assert spec.teacher is None


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(tmp_path / "list.yaml")


def test_spec_is_a_pydantic_model_with_forbidden_extras():
    assert ExperimentSpec.model_config["extra"] == "forbid"


def test_errors_carry_issues_with_paths_and_choices():
    from kdlab.distill import METHODS
    from kdlab.models import MODELS

    with pytest.raises(ConfigError) as err:
        load_spec({"method": {"name": "kdd"}, "student": {"name": "resnet1000"}, "optim": {"schedule": "cyclic"}})
    issues = {i.where: i for i in err.value.issues}
    assert set(issues) == {"method.name", "student.name", "optim.schedule"}
    assert issues["method.name"].path == ("method", "name") and issues["method.name"].choices == tuple(METHODS.names())
    assert issues["method.name"].message.startswith("unknown method 'kdd'.")  # the path is not repeated
    assert issues["student.name"].choices == tuple(MODELS.names())
    assert issues["optim.schedule"].choices == ("cosine", "step", "none")
    with pytest.raises(ConfigError) as err:
        load_spec({"method": {"name": "kd", "params": {"temp": 3, "temperature": -1}}, "optimiser": {},
                   "data": {"shift": [{"name": "rotate"}, {"name": "spin"}]}, "device": "tpu"})
    issues = {i.where: i for i in err.value.issues}
    assert issues["method.params.temp"].choices == ("ce_weight", "kd_weight", "temperature")
    assert "optimiser" in issues and "optim" in issues["optimiser"].choices
    assert "rotate" in issues["data.shift.1.name"].choices and "device" in issues
    with pytest.raises(ConfigError) as err:
        load_spec({"teacher": None, "method": {"name": "kd"}})
    assert [i.where for i in err.value.issues] == ["teacher"]


def test_validation_issues_serve_any_spec_model():
    from pydantic import ValidationError

    from kdlab.runs.spec import OptimSpec, validation_issues

    with pytest.raises(ValidationError) as err:
        OptimSpec(lr=0, name="lbfgs")
    issues, text = validation_issues(err.value, OptimSpec, title="invalid optimisation")
    assert text.startswith("invalid optimisation:\n  ") and "lr: Input should be greater than 0" in text
    assert {i.where: i.choices for i in issues} == {"lr": None, "name": ("sgd", "adam", "adamw")}


def test_spec_serialisation_is_unchanged():
    # digests are cache keys (teacher cache, runs): the default spec must hash as it always did
    assert ExperimentSpec().digest() == "b0c9d49b7feda88e"
    assert list(ExperimentSpec().to_dict()["optim"]) == ["name", "lr", "momentum", "weight_decay", "schedule",
                                                          "epochs", "batch_size", "grad_clip"]
