"""A tiny source zoo for the shift tests: four width-8 ConvNets, one epoch on 600 images each."""
from __future__ import annotations

import pytest

from kdlab.transfer import SourceDef, SourceZoo

TINY = (SourceDef("mnist"), SourceDef("mnist_invert", (("invert", 1.0),)),
        SourceDef("mnist_rot90", (("rotate", 1.0),)),
        SourceDef("mnist_0to4", (("subset", 0.0, {"classes": [0, 1, 2, 3, 4]}),), "digits 0-4"))


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> SourceZoo:
    z = SourceZoo(root=tmp_path_factory.mktemp("shift-zoo"), arch_params={"width": 8, "depth": 2, "norm": "batchnorm"},
                  epochs=1, n_train=600, sources=TINY)
    return z.build()
