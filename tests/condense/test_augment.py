"""DSA: identities at neutral parameters, exact flips and shifts, siamese sharing, differentiability."""
from __future__ import annotations

import pytest
import torch

from kdlab.condense import augment
from kdlab.errors import ConfigError


def _params(op: str, u: list[float], n: int = 3) -> augment.DSAParams:
    return augment.DSAParams((op,), torch.zeros(n, dtype=torch.long), torch.tensor([u] * n))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("op,u", [("color", [0.5, 0.5, 0.5]), ("scale", [5 / 11, 5 / 11, 0.0]), ("rotate", [0.5, 0, 0]),
                                  ("crop", [0.5, 0.5, 0.0]), ("flip", [0.9, 0, 0])])
def test_neutral_parameters_are_identity(x, op, u):
    # brightness 0, saturation x1, contrast x1; scale u*(1.2-1/1.2)+1/1.2 = 1 at u=5/11; rotate 0 rad;
    # crop shift floor(0.5*5)-2 = 0 for a 9px image; flip only when u < 0.5
    assert torch.allclose(augment.apply(x, _params(op, u)), x, atol=1e-5)


def test_flip_mirrors_exactly(x):
    assert torch.equal(augment.apply(x, _params("flip", [0.1, 0, 0])), x.flip(3))


def test_crop_is_an_integer_shift_with_zero_fill(x):
    # 9px side: shift range +-int(9*0.125+0.5)=1; u=0 gives -1 in both axes: content moves down-right by 1
    out = augment.apply(x, _params("crop", [0.0, 0.0, 0.0]))
    assert torch.allclose(out[..., 1:, 1:], x[..., :-1, :-1], atol=1e-5)
    assert out[..., 0, :].abs().max() == 0 and out[..., :, 0].abs().max() == 0


def test_cutout_zeroes_a_half_size_square(x):
    out = augment.apply(x, _params("cutout", [0.5, 0.5, 0.0]))
    zeroed = (out == 0) & (x != 0)
    assert int(zeroed[0, 0].sum()) == 5 * 5  # int(9*0.5+0.5) = 5, centred, fully inside


def test_siamese_take_applies_the_same_transform(x):
    g = torch.Generator().manual_seed(1)
    p = augment.sample(6, augment.parse_strategy(augment.DEFAULT_STRATEGY), g, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert p.op[:3].unique().numel() == 1 and p.op[3:].unique().numel() == 1  # one op per group
    both = torch.cat([x, x])
    out = augment.apply(both, p)
    again = augment.apply(x[2:3], p.take(torch.tensor([2])))
    assert torch.allclose(again, out[2:3], atol=1e-6)


def test_gradients_flow_to_the_images(x):
    x = x.clone().requires_grad_(True)
    for op in augment.OPS:
        p = augment.sample(3, (op,), torch.Generator().manual_seed(2))
        augment.apply(x, p).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None


def test_bad_strategy_names_the_choices():
    with pytest.raises(ConfigError, match="valid"):
        augment.parse_strategy("color_blur")
    assert augment.parse_strategy("none") == ()
