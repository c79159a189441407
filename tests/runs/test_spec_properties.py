"""Property tests of ``load_spec`` / ``load_job`` (Hypothesis): whatever a file or dict holds — random YAML
documents, random bytes, valid specs with one field changed — the answer is a valid spec or a kdlab error whose
message is at most 2,000 characters, never another exception, and it comes within a second."""
from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdlab.errors import MAX_MESSAGE, KdlabError
from kdlab.runs.spec import ExperimentSpec, JobSpec, load_job, load_spec

#: one second per example (Hypothesis' own deadline); derandomized so CI runs the same examples every time
PROPERTY = settings(max_examples=150, deadline=1000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID = {"name": "p", "seed": 1, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 500, "size": 8}},
         "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1}},
         "student": {"name": "mlp", "params": {"width": 8}}, "method": {"name": "kd", "params": {"temperature": 4}},
         "optim": {"epochs": 2, "lr": 0.1, "batch_size": 64, "schedule": "cosine"}, "resources": {"cpus": 1},
         "tags": ["a"]}
#: names and values a spec can hold, so mutations often reach deep validation rather than failing at the top
NAMES = ["kd", "dkd", "fitnet", "vanilla", "mlp", "convnet", "resnet8", "timm:resnet18", "torchvision:resnet18",
         "mnist5k", "digits", "cuda", "cpu", "auto", "cosine", "sgd", "adam", "condense", "train", "cka", "x" * 3000]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-10 ** 40, max_value=10 ** 40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50), st.sampled_from(NAMES))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                       st.dictionaries(st.text(max_size=12) | st.sampled_from(
                                                           sorted(VALID) + ["params", "name", "kind"]), inner,
                                                           max_size=6)), max_leaves=30)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))


def _outcome(source) -> None:
    """A valid spec that round-trips, or a bounded kdlab error; anything else fails the test."""
    try:
        spec = load_job(source)
    except KdlabError as e:
        assert len(str(e)) <= MAX_MESSAGE, len(str(e))
        assert str(e).strip(), "an error says what is wrong"
        return
    assert isinstance(spec, (ExperimentSpec, JobSpec))
    assert load_job(spec.to_dict()).to_dict() == spec.to_dict()  # what it says is what it runs


@pytest.fixture(scope="module", autouse=True)
def _warm():
    load_spec(VALID)  # imports and registries once, so the deadline measures validation only


@PROPERTY
@given(doc=values)
def test_random_yaml_documents(tmp_path, doc):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    _outcome(path)


@PROPERTY
@given(data=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    _outcome(path)


@PROPERTY
@given(data=st.data())
def test_valid_specs_with_one_change(data):
    spec = yaml.safe_load(yaml.safe_dump(VALID))
    path = data.draw(st.sampled_from(list(_paths(spec))[1:]))
    *parents, key = path
    node = spec
    for p in parents:
        node = node[p]
    change = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if change == "replace":
        node[key] = data.draw(values)
    elif change == "delete":
        del node[key]
    elif isinstance(node[key], dict):
        node[key][data.draw(st.text(max_size=10) | st.sampled_from(NAMES))] = data.draw(values)
    _outcome(spec)


def test_the_properties_can_fail():
    """The checks above are live: a float NaN in a spec is refused, the valid spec passes and round-trips."""
    _outcome(VALID)
    with pytest.raises(KdlabError):
        load_spec({**VALID, "optim": {"lr": math.nan}})
