"""Errors carry what was wrong as data (``Issue``: path, message, choices) beside their readable text."""
from __future__ import annotations

import pickle

import pytest

from kdlab.errors import ConfigError, Issue, UnknownNameError, unknown
from kdlab.registry import Param, Registry


def test_issue_paths_join_and_read_as_dotted():
    issue = Issue("params.temperature", "-1.0 is outside [0.05, 100.0]")
    assert issue.path == ("params", "temperature") and issue.choices is None
    assert issue.under("method").where == "method.params.temperature"
    assert str(issue.under("data", "shift", 0)) == "data.shift.0.params.temperature: -1.0 is outside [0.05, 100.0]"
    err = ConfigError.at("optim.lr", "must be > 0")
    assert str(err) == "optim.lr: must be > 0" and err.issues == (Issue(("optim", "lr"), "must be > 0"),)
    again = pickle.loads(pickle.dumps(err))  # errors cross process boundaries (workers, Ray)
    assert str(again) == str(err) and again.issues == err.issues
    assert ConfigError("plain").issues == ()


def test_unknown_names_carry_their_choices():
    err = unknown("method", "kdd", ["kd", "dkd", "vanilla"], where="name")
    assert isinstance(err, UnknownNameError) and str(err).startswith("name: unknown method 'kdd'.")
    assert err.issues == (Issue(("name",), err.issues[0].message, ("dkd", "kd", "vanilla")),)
    assert unknown("run", "x", [], where="/tmp/a.b/runs").issues[0].path == ("/tmp/a.b/runs",)  # free text whole


def test_params_and_registries_attach_their_issue():
    p = Param("a", "mode", str, choices=("a", "b"))
    with pytest.raises(ConfigError, match=r"params\.mode: 'c' is not one of") as err:
        p.check("c", "params.mode")
    assert err.value.issues[0].path == ("params", "mode") and err.value.issues[0].choices == ("a", "b")
    lr = Param(0.1, "lr", float, 0.0, 10.0, low_open=True)
    assert lr.check(10, "lr") == 10.0
    with pytest.raises(ConfigError, match=r"lr: 0.0 is outside \(0.0, 10.0\]"):
        lr.check(0.0, "lr")
    reg = Registry("thing")
    reg.register("x", params={"mode": p})(object)
    with pytest.raises(ConfigError) as err:
        reg.validate("x", {"moed": "a"})
    assert err.value.issues[0].where == "params.moed" and err.value.issues[0].choices == ("mode",)
    with pytest.raises(UnknownNameError) as err:
        reg.validate("y", {}, where="name")
    assert err.value.issues[0].choices == ("x",)
