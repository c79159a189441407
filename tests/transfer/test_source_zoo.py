"""SourceZoo: built-in sources trained once and cached with cards; user models join and persist."""
from __future__ import annotations

import math

import pytest
import torch

from kdlab import create
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.transfer import BUILTIN_SOURCES, SourceZoo
from tests.transfer.conftest import TINY


def test_builtin_zoo_has_at_least_8_distinct_sources():
    assert len(BUILTIN_SOURCES) >= 8
    assert len({repr((d.dataset, d.shifts)) for d in BUILTIN_SOURCES}) == len(BUILTIN_SOURCES)
    assert len({d.task for d in BUILTIN_SOURCES}) >= 3  # different label spaces, not only domains


def test_cards_describe_trained_sources(zoo):
    cards = zoo.cards()
    assert list(cards.index)[:3] == ["mnist", "mnist_invert", "mnist_parity"]  # then any user sources
    assert {"data", "task", "architecture", "accuracy"} <= set(cards.columns)
    assert cards.loc["mnist_parity", "classes"] == 2 and cards.loc["mnist", "classes"] == 10
    assert cards.loc["mnist", "accuracy"] > 0.3  # well above 10% chance after 2 epochs on 600 images
    assert "invert" in cards.loc["mnist_invert", "data"]


def test_cache_is_reused_without_training(zoo):
    again = SourceZoo(root=zoo.root, arch_params=zoo.arch_params, epochs=2, n_train=600, sources=TINY)
    assert all(again.is_built(n) for n in again.names())
    a, b = zoo.load("mnist"), again.load("mnist")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert again.card("mnist").accuracy == zoo.card("mnist").accuracy


def test_user_source_is_saved_and_comes_back(zoo):
    model = create("convnet", 4, (1, 28, 28), width=4, depth=2)
    card = zoo.add("mine", model, data="my images", task="4 shapes", params={"width": 4, "depth": 2})
    assert card.user and card.classes == 4
    again = SourceZoo(root=zoo.root, arch_params=zoo.arch_params, epochs=2, n_train=600, sources=TINY)
    assert "mine" in again.names()
    assert again.card("mine").task == "4 shapes" and math.isnan(again.card("mine").accuracy)
    assert again.load("mine")(torch.zeros(1, 1, 28, 28)).shape == (1, 4)
    with pytest.raises(ConfigError, match="built-in"):
        zoo.add("mnist", model)


def test_unknown_source_lists_valid_names(zoo):
    with pytest.raises(UnknownNameError, match="mnist_invert"):
        zoo.load("mnist_inverted")


def test_a_user_checkpoint_that_does_not_load_is_named_and_kept(tmp_path):
    """A broken user entry is an error naming the source and its file, and the file is not deleted; remove() is
    the way out, and the rest of the zoo still loads."""
    from kdlab.errors import CheckpointError

    zoo = SourceZoo(root=tmp_path, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1, n_train=100,
                    sources=TINY[:1])
    zoo.add("mine", create("convnet", 3, (1, 28, 28), width=4, depth=2), params={"width": 4, "depth": 2})
    (tmp_path / "mine.pt").write_bytes(b"not a checkpoint")
    fresh = SourceZoo(root=tmp_path, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1,
                      n_train=100, sources=TINY[:1])
    with pytest.raises(CheckpointError, match=r"user source 'mine'.*mine\.pt.*zoo\.remove\('mine'\)"):
        fresh.load("mine")
    assert (tmp_path / "mine.pt").read_bytes() == b"not a checkpoint"  # nothing lost
    assert fresh.load("mnist")(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    fresh.remove("mine")
    assert "mine" not in fresh.names() and not (tmp_path / "mine.pt").exists()
    assert "mine" not in SourceZoo(root=tmp_path, sources=TINY[:1]).names()
    with pytest.raises(ConfigError, match="built-in"):
        fresh.remove("mnist")


def test_a_broken_builtin_checkpoint_is_retrained_with_a_warning_and_a_broken_card_is_skipped(tmp_path):
    kw = dict(root=tmp_path, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1, n_train=100,
              sources=TINY[:1])
    SourceZoo(**kw).build()
    (tmp_path / "mnist.pt").write_bytes(b"truncated")
    (tmp_path / "other.json").write_text("{not json")
    with pytest.warns(UserWarning, match="other.json"):
        zoo = SourceZoo(**kw)
    with pytest.warns(UserWarning, match="retraining"):
        model = zoo.load("mnist")
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10) and zoo.card("mnist").classes == 10
