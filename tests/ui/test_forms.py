"""Forms from the registries, validation messages mapped to fields, both launcher faces."""
from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch

from kdlab.distill import METHODS
from kdlab.errors import ConfigError, Issue
from kdlab.runs.spec import load_spec
from kdlab.ui import forms


def test_fields_come_from_param_describe():
    state = forms.FormState()
    fields = state.fields()
    temp = {f.path: f for f in fields["method"]}["method.params.temperature"]
    described = METHODS.entry("kd").params["temperature"].describe()
    assert (temp.kind, temp.default, temp.low, temp.high, temp.doc) == (
        "float", described["default"], described["low"], described["high"], described["doc"])
    norm = {f.path: f for f in fields["teacher"]}["teacher.params.norm"]
    assert norm.kind == "choice" and "batchnorm" in norm.choices
    assert {f.path for f in fields["data"]} == {"data.params.n_train"}
    state.set_name("method", "dkd")
    assert "method.params.beta" in state.all_fields()
    with pytest.raises(KeyError, match="valid"):
        state.set_name("method", "nope")


def test_default_form_is_valid_and_teacher_free_methods_drop_the_teacher():
    state = forms.FormState()
    spec, errors = forms.validate(state)
    assert errors == {} and spec.method.name == "kd"
    state.set_name("method", "vanilla")
    spec, errors = forms.validate(state)
    assert errors == {} and spec.teacher is None


def test_validation_messages_land_on_their_fields():
    state = forms.FormState()
    state.values["method.params.temperature"] = 500.0
    state.values["optim.epochs"] = 0
    spec, errors = forms.validate(state)
    assert spec is None
    assert "outside [0.05, 100.0]" in errors["method.params.temperature"]
    assert "greater than or equal to 1" in errors["optim.epochs"]
    error = ConfigError("invalid experiment spec:\n  data: name: unknown dataset 'x'. Valid: digits",
                        issues=[Issue(("data", "name"), "unknown dataset 'x'. Valid: digits", ("digits",))])
    assert forms.error_map(error, {"data": None}) == {"data": "name: unknown dataset 'x'. Valid: digits"}
    assert forms.error_map(error) == {"data.name": "unknown dataset 'x'. Valid: digits"}
    assert forms.error_map(ConfigError("executor: no GPU"), {"data": None}) == {"": "executor: no GPU"}
    named = forms.FormState()  # a top-level field (the run name) keeps its own path and its whole message
    named.values["name"] = ""
    spec, errors = forms.validate(named)
    assert spec is None and list(errors) == ["name"] and "at least 1 character" in errors["name"]


def test_every_issue_of_a_bad_spec_lands_on_its_widget():
    state = forms.FormState()
    spec = state.to_spec()
    spec["method"]["name"] = "kdd"  # unknown name: on the method select, keeping the "name:" path
    spec["student"]["params"]["width"] = 0  # a declared parameter out of range
    spec["optim"].update(momentum=1.5, name="lbfgs")  # optimisation fields (from OPTIM)
    spec["teacher"]["optim"]["epochs"] = 0
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    paths = {i.where for i in err.value.issues}
    assert paths == {"method.name", "student.params.width", "optim.momentum", "optim.name", "teacher.optim.epochs"}
    widgets = {**state.all_fields(), **dict.fromkeys(forms.SECTIONS)}  # what both launchers render
    errors = forms.error_map(err.value, widgets)
    assert set(errors) == {"method", "student.params.width", "optim.momentum", "optim.name", "teacher.optim.epochs"}
    assert errors["method"].startswith("name: unknown method 'kdd'. Did you mean 'kd'")
    assert "outside" in errors["student.params.width"] and "less than 1" in errors["optim.momentum"]
    assert "'sgd', 'adam' or 'adamw'" in errors["optim.name"]
    assert "greater than or equal to 1" in errors["teacher.optim.epochs"]


def test_one_optim_declaration_serves_spec_trainer_and_form(monkeypatch):
    from kdlab.distill.optim import OPTIM
    from kdlab.distill.trainer import TrainConfig
    from kdlab.runs.spec import OptimSpec, params_model

    trainer = {f.metadata["optim"]: f.name for f in fields(TrainConfig) if "optim" in f.metadata}
    form = {f.path.removeprefix("optim."): f for f in forms.optim_fields() if f.path.startswith("optim.")}
    assert list(OptimSpec.model_fields) == list(OPTIM) == list(form) and set(trainer) == set(OPTIM)
    # OptimSpec is exactly the model built from the declaration (types, defaults, bounds, docs)
    built = params_model("OptimSpec", OPTIM, OptimSpec.__doc__)
    assert built.model_json_schema() == OptimSpec.model_json_schema()
    config = TrainConfig()
    for key, p in OPTIM.items():
        assert OptimSpec.model_fields[key].default == p.default == getattr(config, trainer[key])
        f = form[key]
        assert (f.low, f.high, f.doc, f.choices) == (p.low, p.high, p.doc, p.choices)
        assert f.default == forms.OPTIM_DEFAULTS.get(key, p.default)  # the launcher shortens epochs
    # a default changed in the declaration (monkeypatch undoes it) reaches all three
    monkeypatch.setitem(OPTIM, "momentum", replace(OPTIM["momentum"], default=0.5, high=0.8))
    assert params_model("OptimSpec", OPTIM, "").model_fields["momentum"].default == 0.5
    assert TrainConfig().momentum == 0.5
    assert {f.path: f for f in forms.optim_fields()}["optim.momentum"].default == 0.5
    with pytest.raises(ConfigError, match="momentum: 0.9 is outside"):
        TrainConfig(momentum=0.9)


def test_coerce_lists_and_optionals():
    f = forms.param_field("method.params.teacher_layers", {"type": "list", "default": None})
    assert forms.coerce(f, "a.b, c") == ["a.b", "c"] and forms.coerce(f, "") is None


def test_panel_and_widget_launchers_share_the_description(store):
    from kdlab.ui.launcher import Launcher, LauncherWidget

    for ui in (Launcher(store=store), LauncherWidget(store=store)):
        assert set(ui.widgets) == set(ui.state.all_fields())
        ui.set_value("method.params.temperature", 500.0)
        assert "method.params.temperature" in ui.errors and ui.launch_button.disabled
        assert ui.launch() is None
        ui.set_value("method.params.temperature", 2.0)
        assert ui.errors == {} and not ui.launch_button.disabled
        ui.select("method", "fitnets")
        assert "method.params.feat_weight" in ui.widgets
    p = Launcher(store=store)
    p.set_value("method.params.temperature", 500.0)
    assert p.error_panes["method.params.temperature"].visible
    assert "outside" in p.error_panes["method.params.temperature"].object


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_launchers_say_what_this_machine_lacks_before_recording_a_run(store):
    """Issue #18: the forms get the launch's preflight errors (no GPU here) on their field; no run is recorded."""
    from kdlab.ui.launcher import Launcher, LauncherWidget

    for ui in (Launcher(store=store), LauncherWidget(store=store)):
        ui.set_value("device", "cuda")
        assert ui.launch() is None
        assert "no GPU" in ui.errors["device"], ui.errors
    assert len(store.list_runs()) == 0 and list(store.runs_dir.iterdir()) == []
