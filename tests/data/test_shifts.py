"""Domain shifts: identities, invariants, determinism, label maps, composition and errors."""
from __future__ import annotations

import pytest
import torch

from kdlab.data import SHIFTS, ArrayDataset, apply_shifts, list_shifts, load, shifted
from kdlab.data.shifts import as_steps
from kdlab.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    return load("digits", split="val", size=16)


def test_every_shift_is_listed_with_its_severity_meaning() -> None:
    table = list_shifts()
    assert set(table["name"]) == set(SHIFTS.names()) >= {"rotate", "invert", "colorize", "noise", "blur",
                                                          "edge", "subset", "relabel"}
    assert table["severity"].str.len().min() > 10


@pytest.mark.parametrize("name", ["rotate", "invert", "colorize", "noise", "blur", "edge"])
def test_image_shifts_stay_in_range_and_are_deterministic(digits: ArrayDataset, name: str) -> None:
    a = apply_shifts(digits, name, severity=0.7, seed=3)
    b = apply_shifts(digits, name, severity=0.7, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, digits.y)
    assert a.x.dtype == torch.float32 and 0.0 <= float(a.x.min()) and float(a.x.max()) <= 1.0
    assert not torch.equal(a.x if a.x.shape == digits.x.shape else a.x[:, :1], digits.x)


@pytest.mark.parametrize("name", ["rotate", "noise", "blur", "edge", "invert"])
def test_severity_zero_is_identity(digits: ArrayDataset, name: str) -> None:
    assert torch.equal(apply_shifts(digits, (name, 0.0)).x, digits.x)


def test_rotate_quarter_turn_is_rot90(digits: ArrayDataset) -> None:
    r = apply_shifts(digits, ("rotate", 1.0))
    assert torch.allclose(r.x, torch.rot90(digits.x, 1, dims=(2, 3)), atol=1e-5)
    half = apply_shifts(apply_shifts(digits, ("rotate", 0.5)), ("rotate", 0.5))  # 45 + 45 degrees
    assert (half.x - r.x).abs().mean() < 0.05


def test_rotate_per_image_angles_depend_on_seed(digits: ArrayDataset) -> None:
    a = apply_shifts(digits, ("rotate", 0.5, {"per_image": True}), seed=0)
    b = apply_shifts(digits, ("rotate", 0.5, {"per_image": True}), seed=1)
    assert not torch.equal(a.x, b.x)


def test_invert_twice_is_identity(digits: ArrayDataset) -> None:
    once = apply_shifts(digits, ("invert", 1.0))
    assert torch.allclose(once.x, 1 - digits.x)
    assert torch.allclose(apply_shifts(once, ("invert", 1.0)).x, digits.x, atol=1e-6)
    half = apply_shifts(digits, ("invert", 0.5), seed=0)
    flipped = (half.x - digits.x).flatten(1).abs().amax(1) > 0
    assert 0.3 < flipped.float().mean() < 0.7


def test_noise_std_is_severity() -> None:
    flat = ArrayDataset(torch.full((64, 1, 16, 16), 0.5), torch.zeros(64, dtype=torch.long))
    noisy = apply_shifts(flat, ("noise", 0.1), seed=0)
    assert abs(float((noisy.x - 0.5).std()) - 0.1) < 0.005
    other_split = apply_shifts(flat, ("noise", 0.1), seed=0, split="test")
    assert not torch.equal(noisy.x, other_split.x)


def test_blur_keeps_mean_brightness_and_smooths(digits: ArrayDataset) -> None:
    b, more = apply_shifts(digits, ("blur", 0.5)), apply_shifts(digits, ("blur", 1.0))
    assert abs(float(b.x.mean()) - float(digits.x.mean())) < 0.01
    assert abs(float(more.x.mean()) - float(digits.x.mean())) < 0.01
    tv = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(more.x) < tv(b.x) < 0.9 * tv(digits.x)


def test_edge_is_zero_on_flat_images() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[1, :, :, 4:] = 1.0  # a vertical step edge
    e = apply_shifts(ArrayDataset(x, torch.tensor([0, 1])), ("edge", 1.0))
    assert float(e.x[0].abs().max()) == 0.0
    assert float(e.x[1, 0, :, 3:5].min()) == 1.0 and float(e.x[1, 0, :, :2].max()) == 0.0


def test_colorize_tint_gives_rgb_proportional_to_grey(digits: ArrayDataset) -> None:
    c = apply_shifts(digits, ("colorize", 1.0), seed=0)
    assert c.x.shape[1] == 3
    strongest = c.x.amax(dim=1, keepdim=True)
    assert torch.allclose(strongest, digits.x, atol=1e-6)  # the dominant channel carries the grey image


def test_colorize_luma_keeps_grey_mean(digits: ArrayDataset) -> None:
    c = apply_shifts(digits, ("colorize", 1.0, {"mode": "luma"}), seed=0)
    assert c.x.shape[1] == 3
    assert torch.allclose(c.x.mean(dim=1, keepdim=True), digits.x, atol=1e-5)
    assert float(c.x.std(dim=1).max()) > 0.1  # some pixels really are coloured


def test_colorize_per_class_colour_is_shared_across_splits() -> None:
    def colours(split: str) -> dict[int, torch.Tensor]:
        c = shifted("digits", shift=("colorize", 1.0, {"per_class": True}), split=split, seed=5)
        peak = c.x.flatten(2).amax(2)  # per-image colour times the image's brightest grey value
        unit = peak / peak.amax(1, keepdim=True)
        return {int(k): unit[c.y == k].mean(0) for k in range(10)}

    tr, te = colours("train"), colours("test")
    assert all(torch.allclose(tr[k], te[k], atol=1e-4) for k in range(10))
    assert len({tuple(v.round(decimals=2).tolist()) for v in tr.values()}) == 10


def test_subset_remaps_labels(digits: ArrayDataset) -> None:
    s = apply_shifts(digits, ("subset", 0.0, {"classes": [7, 3]}))
    assert s.classes == ["7", "3"] and s.num_classes == 2
    assert len(s) == int(((digits.y == 7) | (digits.y == 3)).sum())
    assert torch.equal(s.x[s.y == 0], digits.x[digits.y == 7])
    assert apply_shifts(digits, ("subset", 1.0)).num_classes == 2
    assert apply_shifts(digits, ("subset", 0.0)).num_classes == 10


def test_relabel_parity_and_permutation(digits: ArrayDataset) -> None:
    p = apply_shifts(digits, ("relabel", 0.5, {"mode": "parity"}))
    assert p.classes == ["even", "odd"] and torch.equal(p.y, digits.y % 2) and torch.equal(p.x, digits.x)
    perm = apply_shifts(digits, ("relabel", 1.0), seed=2)
    lut = {int(a): int(b) for a, b in zip(digits.y, perm.y, strict=True)}
    assert sorted(lut.values()) == list(range(10)) and all(lut[k] != k for k in range(10))
    assert all(perm.classes[lut[k]] == str(k) for k in range(10))
    assert torch.equal(apply_shifts(digits, ("relabel", 0.0)).y, digits.y)
    m = apply_shifts(digits, ("relabel", 0.0, {"mode": "mapping", "mapping": [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]}))
    assert m.classes == ["0+1+2", "3+4+5", "6+7+8+9"]


def test_composition_applies_in_order() -> None:
    both = shifted("digits", shift=[("rotate", 1.0), ("invert", 1.0)], split="test")
    base = load("digits", split="test")
    assert torch.allclose(both.x, 1 - torch.rot90(base.x, 1, dims=(2, 3)), atol=1e-5)
    named = shifted("digits", shift=["rotate", "noise"], severity=0.2, split="test", seed=1)
    assert named.x.shape == base.x.shape and "rotate(0.2), noise(0.2)" in named.source
    dicts = shifted("digits", shift=[{"name": "subset", "classes": [1, 2]}, ("colorize", 1.0)], split="test")
    assert dicts.x.shape[1] == 3 and dicts.num_classes == 2


def test_shift_errors_name_the_field() -> None:
    with pytest.raises(UnknownNameError, match=r"shift\[1\]: unknown shift 'rotat'.*rotate"):
        as_steps(["noise", "rotat"])
    with pytest.raises(ConfigError, match=r"shift.severity: 2.0 is outside \[0.0, 1.0\]"):
        as_steps(("noise", 2.0))
    with pytest.raises(ConfigError, match=r"shift.mode: 'odd' is not one of \['permute', 'parity', "):
        as_steps(("relabel", 0.5, {"mode": "odd"}))
    with pytest.raises(ConfigError, match="shift.classes: entries must be class indices in 0..9"):
        shifted("digits", shift=("subset", 0.5, {"classes": [1, 12]}))
    with pytest.raises(ConfigError, match="split: 'dev' is not one of"):
        shifted("digits", shift="rotate", split="dev")


def test_zoom_shrinks_the_content_about_the_centre(digits: ArrayDataset) -> None:
    assert apply_shifts(digits, ("zoom", 0.0)) is not None
    torch.testing.assert_close(apply_shifts(digits, ("zoom", 0.0)).x, digits.x)
    z = apply_shifts(digits, ("zoom", 0.8))  # content at 1 - 0.4 = 60% of the size
    mass = lambda x: x.sum(dim=(1, 2, 3))  # noqa: E731
    ratio = (mass(z.x) / mass(digits.x).clamp(min=1e-6)).median()
    assert abs(float(ratio) - 0.6**2) < 0.05  # area (so ink) scales with the square of the size
    h = digits.x.shape[-1]
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    spread = lambda x: (x.sum(dim=(1, 3)) * ys.abs()).sum(1) / x.sum(dim=(1, 3)).sum(1).clamp(min=1e-6)  # noqa: E731
    assert abs(float((spread(z.x) / spread(digits.x)).median()) - 0.6) < 0.06  # rows move towards the centre
    assert torch.equal(z.y, digits.y) and 0 <= float(z.x.min()) and float(z.x.max()) <= 1
