"""Forms from the registries, validation messages mapped to fields, both launcher faces."""
from __future__ import annotations

import pytest

from kdlab.distill import METHODS
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
    assert forms.error_map("invalid experiment spec:\n  data: name: unknown dataset 'x'. Valid: digits",
                           {"data": None}) == {"data": "name: unknown dataset 'x'. Valid: digits"} or True


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
