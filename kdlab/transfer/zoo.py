"""``SourceZoo``: source models trained on distinct domains/tasks from built-in data, cached with a card each.

The built-in sources are small ConvNets trained on ``mnist5k`` under different domain shifts (rotation,
inversion, blur, edges, noise) and relabelled tasks (parity, a 5-class subset), so they differ in how
close they are to a digit target. Each is trained once and cached under ``cache_dir("zoo", <settings>)``
with a card: data, task, architecture, accuracy on its own test split. Users add their own models with
``add``; a model built with ``kdlab.create`` is saved with its card, any other stays for the session.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from kdlab.data import shifted
from kdlab.data.api import load
from kdlab.data.base import ArrayDataset
from kdlab.distill.base import create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.errors import CheckpointError, ConfigError, unknown
from kdlab.models import create
from kdlab.models.checkpoints import load_state
from kdlab.models.taps import num_logits
from kdlab.paths import cache_dir
from kdlab.transfer.teachers import accuracy, embedding_layer

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SourceDef:
    """How a built-in source is made: a dataset, the shifts applied to it, and what the task is."""

    name: str
    shifts: tuple = ()
    task: str = "10 digits"
    dataset: str = "mnist5k"
    n_train: int | None = None  # fewer training images than the zoo's setting: a weaker source


BUILTIN_SOURCES: tuple[SourceDef, ...] = (
    SourceDef("mnist"),
    SourceDef("mnist_rot90", (("rotate", 1.0),)),
    SourceDef("mnist_invert", (("invert", 1.0),)),
    SourceDef("mnist_blur", (("blur", 1.0),)),
    SourceDef("mnist_edge", (("edge", 1.0),)),
    SourceDef("mnist_noise", (("noise", 0.6),)),
    SourceDef("mnist_rot_invert", (("rotate", 0.5), ("invert", 1.0))),
    SourceDef("mnist_parity", (("relabel", 0.5, {"mode": "parity"}),), "parity (even/odd)"),
    SourceDef("mnist_0to4", (("subset", 0.0, {"classes": [0, 1, 2, 3, 4]}),), "digits 0-4"),
)
#: The wider zoo of the shift benchmark: the built-in sources plus combined shifts, another size, a two-class task
#: and sources trained on few images, so that which source a target distils from matters.
WIDE_SOURCES: tuple[SourceDef, ...] = (
    *BUILTIN_SOURCES,
    SourceDef("mnist_blur_noise", (("blur", 0.8), ("noise", 0.5))),
    SourceDef("mnist_edge_invert", (("edge", 1.0), ("invert", 1.0))),
    SourceDef("mnist_small", (("zoom", 0.8),)),
    SourceDef("mnist_0or1", (("subset", 0.0, {"classes": [0, 1]}),), "0 vs 1"),
    SourceDef("mnist_few", (), "10 digits, 100 images", n_train=100),
    SourceDef("mnist_invert_few", (("invert", 1.0),), "10 digits, inverted, 100 images", n_train=100),
)


@dataclass
class SourceCard:
    """What a source is: its data and task, architecture, accuracy on its own test split, training cost."""

    name: str
    data: str
    task: str
    architecture: str
    params: dict[str, Any] = field(default_factory=dict)
    classes: int = 0
    in_shape: tuple[int, ...] = ()
    accuracy: float = math.nan
    epochs: int = 0
    train_time_s: float = 0.0
    layer: str = ""
    user: bool = False


def trainable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every parameter trainable, in train mode: the zoo's models are shared and
    frozen (teachers wrap them), so whatever adapts or fine-tunes one trains its own copy."""
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.requires_grad_(True)
    return out.train()


class SourceZoo:
    """A set of source models by name: built-in ones trained on demand and cached, plus the user's own.

    ``arch``/``arch_params``/``epochs``/``n_train`` set how built-in sources are trained; they are part of
    the cache folder name, so changing them trains a separate zoo.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, arch: str = "convnet",
                 arch_params: dict[str, Any] | None = None, epochs: int = 3, n_train: int | None = None,
                 sources: Sequence[SourceDef] = BUILTIN_SOURCES, seed: int = 0):
        self.arch = arch
        self.arch_params = dict(arch_params if arch_params is not None else
                                {"width": 16, "depth": 3, "norm": "batchnorm"})
        self.epochs, self.n_train, self.seed = int(epochs), n_train, int(seed)
        self.defs = {d.name: d for d in sources}
        settings = json.dumps([arch, self.arch_params, epochs, n_train, seed], sort_keys=True)
        digest = hashlib.sha256(settings.encode()).hexdigest()[:10]
        self.root = Path(root) if root is not None else cache_dir("zoo", digest)
        self.root.mkdir(parents=True, exist_ok=True)
        self._models: dict[str, nn.Module] = {}
        self._cards: dict[str, SourceCard] = {}
        for path in sorted(self.root.glob("*.json")):  # user sources saved earlier
            try:
                card = SourceCard(**json.loads(path.read_text()))
            except (ValueError, TypeError) as e:  # one unreadable card does not hide the rest of the zoo
                warnings.warn(f"source card {path} is unreadable ({type(e).__name__}: {e}); skipped", stacklevel=2)
                continue
            if card.user:
                self._cards[card.name] = card

    # -- names and cards -------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every source: the built-in ones, then the user's."""
        return [*self.defs, *(n for n in self._cards if n not in self.defs)]

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __len__(self) -> int:
        return len(self.names())

    def check(self, names: Sequence[str] | None) -> list[str]:
        """``names`` (default: all) validated against the zoo."""
        names = self.names() if names is None else list(names)
        for n in names:
            if n not in self:
                raise unknown("source", n, self.names(), where="sources")
        if not names:
            raise ConfigError(f"sources: choose at least one of {', '.join(self.names())}")
        return names

    def is_built(self, name: str) -> bool:
        return name in self._models or (self.root / f"{name}.pt").is_file()

    def card(self, name: str) -> SourceCard:
        """The card of ``name`` (trains a built-in source first when it is not cached yet)."""
        self.check([name])
        if name not in self._cards:
            self.load(name)
        return self._cards[name]

    def cards(self, build: bool = True) -> pd.DataFrame:
        """One row per source with its card; ``build=False`` lists only what is already trained."""
        rows = [asdict(self.card(n)) for n in self.names() if build or self.is_built(n)]
        return pd.DataFrame(rows, columns=list(SourceCard.__dataclass_fields__)).set_index("name")

    # -- models ---------------------------------------------------------------------------------
    def load(self, name: str) -> nn.Module:
        """Source ``name`` in eval mode (trained and cached on first use for a built-in one)."""
        self.check([name])
        if name in self._models:
            return self._models[name]
        path = self.root / f"{name}.pt"
        if path.is_file():
            try:
                state = load_state(path)
                card = SourceCard(**json.loads(state["card"]))
                model = create(card.architecture, card.classes, tuple(card.in_shape), **card.params)
                model.load_state_dict(state["model"])
            except (CheckpointError, RuntimeError, KeyError, TypeError, ValueError) as e:
                if name not in self.defs:  # the user's own model: never deleted, the error says what to do
                    raise CheckpointError(
                        f"sources: the checkpoint of user source {name!r} ({path}) does not load "
                        f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); nothing was changed. "
                        f"Re-add it with zoo.add(...), remove it with zoo.remove({name!r}), or pass sources "
                        "without it") from e
                warnings.warn(f"source {name!r}: cached checkpoint {path} does not load ({type(e).__name__}); "
                              "retraining it", stacklevel=2)
                path.unlink(missing_ok=True)  # a built-in entry is rebuilt from its definition
                return self.load(name)
        elif name in self.defs:
            model, card = self._train(self.defs[name])
            self._save(model, card)
        else:
            raise ConfigError(f"sources: user source {name!r} was not saved and is not in this session")
        model.eval().requires_grad_(False)  # shared and frozen: trainers take ``trainable_copy(model)``
        self._models[name], self._cards[name] = model, card
        return model

    def build(self, names: Sequence[str] | None = None, progress: Progress | None = None) -> SourceZoo:
        """Train (or load) every source in ``names``; ``progress(done, total, message)`` after each."""
        names = self.check(names)
        for i, n in enumerate(names):
            if progress:
                progress(i, len(names), f"source {n}")
            self.load(n)
        if progress:
            progress(len(names), len(names), "zoo ready")
        return self

    def add(self, name: str, model: nn.Module, data: str = "", task: str = "", accuracy: float = math.nan,
            in_shape: Sequence[int] = (1, 28, 28), layer: str | None = None, params: dict[str, Any] | None = None,
            save: bool = True) -> SourceCard:
        """Add the user's ``model`` as source ``name`` with its card; a model built by ``kdlab.create(arch,
        ..., **params)`` is saved (pass the same ``params``) and comes back in later sessions."""
        if not isinstance(name, str) or not name or any(c in name for c in "+:/ "):
            raise ConfigError(f"name: {name!r} is not a valid source name (no '+', ':', '/', spaces)")
        if name in self.defs:
            raise ConfigError(f"name: {name!r} is a built-in source; choose another name")
        model.eval()
        classes = num_logits(model, in_shape)
        arch = getattr(model, "kdlab_name", type(model).__name__)
        card = SourceCard(name, data, task, arch, dict(params or {}), classes,
                          tuple(in_shape), accuracy, layer=embedding_layer(model, layer), user=True)
        self._models[name], self._cards[name] = model, card
        if save and hasattr(model, "kdlab_name") and ":" not in arch:
            self._save(model, card)
        return card

    def remove(self, name: str) -> None:
        """Forget user source ``name`` and delete its saved files (built-in sources cannot be removed)."""
        if name in self.defs:
            raise ConfigError(f"name: {name!r} is a built-in source; it cannot be removed")
        if name not in self._cards:
            raise unknown("user source", name, [n for n in self._cards if n not in self.defs], where="name")
        self._cards.pop(name)
        self._models.pop(name, None)
        for suffix in (".pt", ".json"):
            (self.root / f"{name}{suffix}").unlink(missing_ok=True)

    # -- internals -------------------------------------------------------------------------------
    def splits(self, d: SourceDef) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        """The train/val/test splits of a built-in source's domain and task."""
        n_train = d.n_train or self.n_train
        extra = {"n_train": n_train} if n_train else {}

        def get(split: str) -> ArrayDataset:
            data = load(d.dataset, split=split, seed=self.seed, **(extra if split == "train" else {}))
            return shifted(data, list(d.shifts), split=split, seed=self.seed) if d.shifts else data

        return get("train"), get("val"), get("test")

    def _train(self, d: SourceDef) -> tuple[nn.Module, SourceCard]:
        train, val, test = self.splits(d)
        torch.manual_seed(self.seed)
        model = create(self.arch, train.num_classes, train.in_shape, **self.arch_params)
        distiller = create_distiller("vanilla", None, model, train.in_shape)
        config = TrainConfig(epochs=self.epochs, batch_size=64, lr=0.05, seed=self.seed, device="cpu",
                             cache_teacher=False, log_every=0)
        t0 = time.perf_counter()
        Trainer(distiller, config).fit(train, val)
        shifts = ", ".join(f"{s[0]}({s[1]:g})" for s in d.shifts) or "none"
        card = SourceCard(d.name, f"{d.dataset} [{len(train)} train], shifts: {shifts}", d.task, self.arch,
                          dict(self.arch_params), train.num_classes, tuple(train.in_shape),
                          accuracy(model, test), self.epochs, time.perf_counter() - t0,
                          embedding_layer(model))
        return model, card

    def _save(self, model: nn.Module, card: SourceCard) -> None:
        path = self.root / f"{card.name}.pt"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"model": model.state_dict(), "card": json.dumps(asdict(card))}, tmp)
        os.replace(tmp, path)
        if card.user:
            (self.root / f"{card.name}.json").write_text(json.dumps(asdict(card)))
