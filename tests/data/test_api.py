"""``load`` / ``catalog`` by name: errors that name the field and the valid choices, catalog facts."""
from __future__ import annotations

import pytest

from kdlab.data import DATASETS, catalog, load
from kdlab.errors import ConfigError, UnknownNameError


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"name: unknown dataset 'mnist'.*'mnist5k'.*Valid: .*digits"):
        load("mnist")


def test_bad_split_names_field_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"split: 'validation' is not one of \['train', 'val', 'test'\]"):
        load("digits", split="validation")


def test_bad_params_name_the_parameter() -> None:
    with pytest.raises(ConfigError, match=r"params.colour: unknown parameter of dataset 'digits'; valid: "
                                          r"margin, n_train, size"):
        load("digits", colour=True)
    with pytest.raises(ConfigError, match=r"params.size: expected a int"):
        load("digits", size="big")


def test_catalog_matches_what_load_returns() -> None:
    table = catalog()
    assert list(table.columns[:7]) == ["name", "classes", "input shape", "train", "val", "test", "source"]
    assert set(table["name"]) == set(DATASETS.names())
    row = table.set_index("name").loc["digits"]
    parts = {s: load("digits", split=s) for s in ("train", "val", "test")}
    assert (row["train"], row["val"], row["test"]) == tuple(len(parts[s]) for s in ("train", "val", "test"))
    assert row["classes"] == parts["train"].num_classes and row["input shape"] == parts["train"].in_shape
    assert "scikit-learn" in row["doc"] or "sklearn" in row["source"]
    m = table.set_index("name").loc["mnist5k"]
    facts = (m["classes"], m["input shape"], m["train"], m["val"], m["test"])
    assert facts == (10, (1, 28, 28), 3500, 500, 1000)
