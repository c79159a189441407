"""The distiller contract and feature taps: bad pairs and paths fail clearly; taps are clean and safe."""
from __future__ import annotations

import re
import sys

import pytest
import torch
from torch import nn

from kdlab.distill import METHODS, FeatureTaps, create_distiller, feature_shapes, list_methods
from kdlab.distill.adapters import make_adapter, match_teacher
from kdlab.errors import ConfigError, ShapeError, UnknownNameError
from kdlab.models import create


def test_mismatched_class_counts_fail_before_training():
    t = create("convnet", 10, (1, 12, 12), width=4, depth=2)
    s = create("mlp", 7, (1, 12, 12), width=8)
    with pytest.raises(ShapeError, match="teacher has 10 output classes but student has 7"):
        create_distiller("kd", t, s, (1, 12, 12))


def test_unknown_method_and_parameter_list_valid_choices():
    t, s = create("mlp", 3, (1, 4, 4), width=4), create("mlp", 3, (1, 4, 4), width=4)
    with pytest.raises(UnknownNameError, match=r"Did you mean 'dkd'.*Valid: .*taid"):
        create_distiller("dkdd", t, s, (1, 4, 4))
    with pytest.raises(ConfigError, match=r"params\.beta2.*valid: alpha, beta, ce_weight, temperature"):
        create_distiller("dkd", t, s, (1, 4, 4), beta2=1.0)


def test_unknown_tap_path_lists_the_closest_real_paths():
    model = create("resnet8", 10, (3, 32, 32))
    with pytest.raises(UnknownNameError) as err:
        FeatureTaps(model, ["layer4"])
    msg = str(err.value)
    assert "'layer1'" in msg and "'layer3'" in msg and "Did you mean" in msg


def test_taps_capture_without_editing_forward_and_remove_their_hooks():
    model = create("convnet", 10, (1, 28, 28), width=8)
    x = torch.rand(3, 1, 28, 28)
    with FeatureTaps(model, ["features.0", "classifier"]) as taps:
        logits = model(x)
        feats = taps.pop()
    assert torch.equal(feats["classifier"], logits)
    assert feats["features.0"].shape == (3, 8, 16, 16)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_taps_copy_outputs_so_inplace_ops_cannot_change_them():
    conv = nn.Conv2d(1, 2, 3)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(2, 1, 5, 5)
    with FeatureTaps(model, ["0"]) as taps:
        model(x)
    assert torch.allclose(taps["0"], conv(x))  # pre-ReLU values, negatives kept
    assert (taps["0"] < 0).any()


def test_feature_shapes_and_automatic_adapters():
    t = create("convnet", 10, (1, 28, 28), width=16)
    s = create("mlp", 10, (1, 28, 28), width=32)
    ts = feature_shapes(t, ["features.1"], (1, 28, 28))["features.1"]
    ss = feature_shapes(s, ["blocks.0"], (1, 28, 28))["blocks.0"]
    assert ts == (16, 8, 8) and ss == (32,)
    adapter = make_adapter(ss, ts)
    t_feat = torch.rand(4, *ts)
    assert adapter(torch.rand(4, *ss)).shape == match_teacher(t_feat, 2).shape == (4, 16)
    conv_adapter = make_adapter((8, 4, 4), ts)
    assert conv_adapter(torch.rand(4, 8, 4, 4)).shape == (4, *ts)


def test_user_model_without_declared_taps_needs_explicit_layers():
    user = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    t = create("mlp", 3, (1, 4, 4), width=8)
    with pytest.raises(ConfigError, match="student_layers"):
        create_distiller("rkd", t, user, (1, 4, 4))
    d = create_distiller("rkd", t, user, (1, 4, 4), teacher_layers=["blocks.1"], student_layers=["2"])
    logits, terms = d.forward_train(torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1]))
    assert logits.shape == (5, 3) and set(terms) == {"ce", "rkd_distance", "rkd_angle"}


def test_every_method_is_listed_documented_and_cites_its_paper():
    table = list_methods()
    assert set(table["name"]) == set(METHODS.names())
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.__doc__ and table.set_index("name").loc[name, "doc"]
        if name != "vanilla":
            module_doc = sys.modules[cls.__module__].__doc__ or ""
            assert re.search(r"(19|20)\d\d", module_doc), f"{name} must cite its paper (authors, year)"
        for pname, p in METHODS.entry(name).params.items():
            assert p.doc, f"{name}.{pname} needs a one-line doc"
