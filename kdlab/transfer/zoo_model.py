"""The ``"zoo:<source>[+<source>...]"`` model names: source teachers buildable by name, so an experiment
spec (and a background run) can use them as teacher or as the fine-tuned student.

``create("zoo:mnist", 10, (1, 28, 28))`` is the frozen source ``mnist`` with a new 10-class head;
``finetune=True`` trains the source too; several names joined by ``+`` give a ``SourceEnsemble`` with
``weights``. ``root`` selects a zoo folder (default: the default ``SourceZoo``). A spec's teacher
``checkpoint`` then loads heads fitted with ``fit_teacher``; without one, the run trains the heads.
"""
from __future__ import annotations

import copy
from typing import Any

from torch import nn

from kdlab.errors import ConfigError
from kdlab.models import external
from kdlab.transfer.teachers import SourceEnsemble, SourceTeacher
from kdlab.transfer.zoo import WIDE_SOURCES, SourceZoo

PREFIX = "zoo"
ALLOWED = ("finetune", "weights", "root", "layer")


def build(name: str, inner: str, num_classes: int, in_shape: tuple[int, int, int],
          params: dict[str, Any]) -> nn.Module:
    """Build ``zoo:<inner>`` (see the module docstring)."""
    bad = sorted(set(params) - set(ALLOWED))
    if bad:
        raise ConfigError(f"model {name!r} params: unknown {bad}; valid: {', '.join(ALLOWED)}")
    zoo = SourceZoo(root=params.get("root"), sources=WIDE_SOURCES)  # any built-in source, the wide zoo's too
    names = zoo.check(inner.split("+"))
    members = [SourceTeacher(copy.deepcopy(zoo.load(n)), num_classes, in_shape, params.get("layer"),
                             finetune=bool(params.get("finetune", False))) for n in names]
    if len(members) == 1 and params.get("weights") is None:
        return members[0]
    return SourceEnsemble(members, params.get("weights"), names)


def spec_name(sources: list[str]) -> str:
    """The model name of ``sources`` (``"zoo:a+b"``)."""
    return f"{PREFIX}:" + "+".join(sources)


external.BUILDERS.setdefault(PREFIX, build)
