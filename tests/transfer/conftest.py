"""A tiny source zoo (3 sources, width-8 ConvNets, 2 epochs on 600 images) and a small digits target."""
from __future__ import annotations

import pytest

from kdlab.transfer import SourceDef, SourceZoo, make_target

TINY = (SourceDef("mnist"), SourceDef("mnist_invert", (("invert", 1.0),)),
        SourceDef("mnist_parity", (("relabel", 0.5, {"mode": "parity"}),), "parity"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> SourceZoo:
    z = SourceZoo(root=tmp_path_factory.mktemp("zoo"), arch_params={"width": 8, "depth": 2, "norm": "batchnorm"},
                  epochs=2, n_train=600, sources=TINY)
    return z.build()


@pytest.fixture(scope="session")
def target():
    return make_target("digits", labels_per_class=5, seed=0, size=28)
