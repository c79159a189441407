"""The model zoo: every registered model builds, runs, exposes its taps, and validates its parameters."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.distill.functional import pool_flatten
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models import MODELS, create, list_models
from kdlab.models.taps import FeatureTaps, feature_shapes

NAMES = MODELS.names()
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
FAMILIES = {"cnn", "resnet", "wrn", "transformer", "mlp", "mixer"}
EXPECTED = {"resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
            "resnet32x4", "resnet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "wrn", "vit_tiny",
            "mixer_tiny", "convnet", "mlp"}
#: models whose classifier reads pool_flatten(embedding tap) directly (the zoo's own, not ConvNet's flatten)
POOLED = [n for n in NAMES if MODELS.entry(n).tags.get("family") in {"resnet", "wrn", "transformer", "mixer"}]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _all_taps(model: nn.Module) -> list[str]:
    taps = model.kdlab_taps
    paths = list(taps["stages"]) + [taps["embedding"], taps["logits"]]
    return list(dict.fromkeys(paths))


def test_registry_has_the_zoo():
    assert EXPECTED <= set(NAMES)
    table = list_models()
    assert EXPECTED <= set(table["name"])
    assert {"timm:<name>", "torchvision:<name>"} <= set(table["name"])
    own = table[table["name"].isin(NAMES)]
    assert set(own["family"]) <= FAMILIES and (own["family"] != "").all()
    assert {"family", "params", "doc"} <= set(table.columns)
    assert (own["doc"].str.len() > 0).all()
    row = table.set_index("name")
    assert row.loc["resnet", "params"] == "depth, width, stem, block"
    assert "patch" in row.loc["vit_tiny", "params"] and "heads" in row.loc["vit_tiny", "params"]
    assert "patch" in row.loc["mixer_tiny", "params"]
    assert row.loc["wrn", "params"] == "depth, widen, dropout"
    assert row.loc["resnet32x4", "family"] == "resnet" and row.loc["vit_tiny", "family"] == "transformer"


@pytest.mark.parametrize("in_shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name, in_shape):
    torch.manual_seed(0)
    model = create(name, 7, in_shape)
    assert model.kdlab_name == name
    with torch.no_grad():
        out = model(torch.randn(2, *in_shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_taps_exist_and_capture(name):
    torch.manual_seed(0)
    model = create(name, 5, (1, 28, 28))
    taps = model.kdlab_taps
    assert set(taps) == {"stages", "embedding", "logits"} and taps["stages"]
    modules = dict(model.named_modules())
    paths = _all_taps(model)
    assert all(p in modules for p in paths)
    x = torch.randn(3, 1, 28, 28)
    with FeatureTaps(model, paths) as t:
        out = model(x)
        feats = t.pop()
    assert list(feats) == paths
    assert all(f.shape[0] == 3 for f in feats.values())
    torch.testing.assert_close(feats[taps["logits"]], out)
    shapes = feature_shapes(model, taps["stages"], (1, 28, 28))
    assert len(shapes) == len(taps["stages"])


@pytest.mark.parametrize("name", POOLED)
def test_embedding_feeds_the_classifier(name):
    """pool_flatten(embedding tap) is exactly the classifier's input (what feature methods and CKA use)."""
    torch.manual_seed(0)
    model = create(name, 4, (3, 32, 32)).eval()
    taps = model.kdlab_taps
    with torch.no_grad(), FeatureTaps(model, [taps["embedding"]]) as t:
        out = model(torch.randn(2, 3, 32, 32))
        emb = t[taps["embedding"]]
    head = model.get_submodule(taps["logits"])
    torch.testing.assert_close(head(pool_flatten(emb)), out)


def test_stage_shapes():
    rn = feature_shapes(create("resnet20", 10, (3, 32, 32)), ["layer1", "layer2", "layer3"], (3, 32, 32))
    assert list(rn.values()) == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    rn4 = feature_shapes(create("resnet8x4", 10, (1, 28, 28)), ["layer1", "layer2", "layer3"], (1, 28, 28))
    assert list(rn4.values()) == [(64, 28, 28), (128, 14, 14), (256, 7, 7)]
    paths = ["block1", "block2", "block3", "relu"]
    wrn = feature_shapes(create("wrn_16_2", 10, (3, 32, 32)), paths, (3, 32, 32))
    assert list(wrn.values()) == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (128, 8, 8)]
    vit = create("vit_tiny", 10, (1, 28, 28), patch=7, dim=64, depth=2, heads=2)
    assert feature_shapes(vit, ["blocks.0", "blocks.1", "pool"], (1, 28, 28)) == {
        "blocks.0": (17, 64), "blocks.1": (17, 64), "pool": (64,)}
    vit_mean = create("vit_tiny", 10, (3, 32, 32), pool="mean", dim=32, depth=1, heads=4)
    assert vit_mean.cls_token is None
    assert feature_shapes(vit_mean, ["blocks.0"], (3, 32, 32)) == {"blocks.0": (64, 32)}
    mixer = create("mixer_tiny", 10, (1, 28, 28), patch=7, dim=32, depth=3)
    assert feature_shapes(mixer, mixer.kdlab_taps["stages"], (1, 28, 28)) == {
        f"blocks.{i}": (16, 32) for i in range(3)}


@pytest.mark.parametrize("name, num_classes, in_shape, published", [
    ("resnet20", 10, (3, 32, 32), 0.27e6),     # He et al. 2016, Table 6
    ("resnet56", 100, (3, 32, 32), 0.86e6),    # CRD (Tian et al. 2020), Table 1
    ("resnet110", 100, (3, 32, 32), 1.73e6),   # CRD
    ("resnet8x4", 100, (3, 32, 32), 1.23e6),   # CRD
    ("resnet32x4", 100, (3, 32, 32), 7.43e6),  # CRD
    ("wrn_40_2", 10, (3, 32, 32), 2.2e6),      # Zagoruyko & Komodakis 2016, Table 4
    ("wrn_16_2", 100, (3, 32, 32), 0.70e6),    # CRD
    ("wrn_40_1", 100, (3, 32, 32), 0.57e6),    # CRD
])
def test_parameter_counts_match_papers(name, num_classes, in_shape, published):
    assert _n_params(create(name, num_classes, in_shape)) == pytest.approx(published, rel=0.02)


def test_generic_builders_match_named_variants():
    assert _n_params(create("resnet", 100, (3, 32, 32), depth=32, width=64, stem=32)) == \
        _n_params(create("resnet32x4", 100, (3, 32, 32)))
    assert _n_params(create("wrn", 10, (3, 32, 32), depth=40, widen=2)) == \
        _n_params(create("wrn_40_2", 10, (3, 32, 32)))
    bottleneck = create("resnet", 10, (3, 32, 32), depth=29, block="bottleneck")
    assert bottleneck.fc.in_features == 256
    small = create("resnet", 3, (3, 32, 32), depth=11, block="bottleneck")
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_finite(name):
    torch.manual_seed(0)
    model = create(name, 6, (3, 16, 16))
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4) % 6
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_with_seed(name):
    def run(seed: int) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(seed)
        model = create(name, 5, (3, 8, 8))
        torch.manual_seed(123)
        return model(torch.randn(2, 3, 8, 8)).detach(), model.state_dict()

    (a, sa), (b, sb), (_, sc) = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_dropout_and_non_square_inputs():
    torch.manual_seed(0)
    for name, params in [("wrn_16_1", {"dropout": 0.3}), ("vit_tiny", {"dropout": 0.1, "depth": 2}),
                         ("mixer_tiny", {"dropout": 0.1, "depth": 2}), ("resnet8", {})]:
        model = create(name, 3, (3, 28, 32), **params)
        assert model(torch.randn(2, 3, 28, 32)).shape == (2, 3)
        model.eval()
        x = torch.randn(2, 3, 28, 32)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x))
    assert create("wrn_16_1", 3, (3, 32, 32), dropout=0.3).block1[0].dropout == 0.3


def test_reference_init():
    torch.manual_seed(0)
    rn = create("resnet56", 10, (3, 32, 32))
    conv = rn.layer2[0].conv1
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)  # Kaiming normal, fan_out
    assert torch.equal(rn.layer1[0].bn1.weight, torch.ones(16))
    vit = create("vit_tiny", 10, (1, 28, 28))
    assert vit.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.equal(vit.head.bias, torch.zeros(10))
    mixer = create("mixer_tiny", 10, (1, 28, 28))
    assert torch.equal(mixer.head.weight, torch.zeros(10, 128))


@pytest.mark.parametrize("name, in_shape, params, bad", [
    ("resnet", (3, 32, 32), {"depth": 21}, "depth"),
    ("resnet", (3, 32, 32), {"depth": 26, "block": "bottleneck"}, "depth"),
    ("resnet", (3, 32, 32), {"depth": 2}, "depth"),
    ("resnet", (3, 32, 32), {"block": "dense"}, "block"),
    ("resnet", (3, 32, 32), {"width": 0}, "width"),
    ("wrn", (3, 32, 32), {"depth": 18}, "depth"),
    ("wrn", (3, 32, 32), {"widen": 2.5}, "widen"),
    ("wrn_40_2", (3, 32, 32), {"dropout": 1.5}, "dropout"),
    ("vit_tiny", (1, 28, 28), {"patch": 5}, "patch"),
    ("vit_tiny", (3, 32, 32), {"patch": 7}, "patch"),
    ("vit_tiny", (1, 28, 28), {"dim": 100, "heads": 3}, "heads"),
    ("vit_tiny", (1, 28, 28), {"pool": "max"}, "pool"),
    ("mixer_tiny", (1, 28, 28), {"patch": 3}, "patch"),
    ("mixer_tiny", (1, 28, 28), {"depth": 0}, "depth"),
    ("resnet20", (3, 32, 32), {"depth": 32}, "depth"),  # named variants fix their depth
])
def test_bad_params_name_the_parameter(name, in_shape, params, bad):
    with pytest.raises(ConfigError, match=rf"\b{bad}\b") as info:
        create(name, 10, in_shape, **params)
    assert name in str(info.value)


def test_bad_patch_lists_valid_sizes():
    valid = r"\(valid: 1, 2, 4, 7, 14, 28\)"
    with pytest.raises(ConfigError, match=r"patch: 5 does not divide the 28x28 image " + valid):
        create("vit_tiny", 10, (1, 28, 28), patch=5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        create("resnet21", 10, (3, 32, 32))
    msg = str(info.value)
    assert "resnet21" in msg and "Did you mean" in msg and "resnet20" in msg
    assert all(n in msg for n in ("wrn_40_2", "vit_tiny", "mixer_tiny", "resnet32x4"))


def test_create_validates_shape_and_classes():
    with pytest.raises(ConfigError, match="in_shape"):
        create("resnet8", 10, (32, 32))
    with pytest.raises(ConfigError, match="num_classes"):
        create("vit_tiny", 0, (1, 28, 28))
