"""The semi-supervised methods' shared parts (issue #19): the affine warp and the weak/strong augmentations
against their declared ranges, the unlabelled draw, FixMatch's confidence-masked pseudo-label term and
DistillWeighted's teacher weights. Small tensors only: these run once per mutant."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill import create_distiller
from kdlab.distill.methods import unlabelled as U

SIDE = 16


def _ramp(n: int = 1, a: float = 0.2, b: float = 0.1, c: float = 0.5, side: int = SIDE) -> torch.Tensor:
    """I(x, y) = c + a x + b y in normalised coordinates (pixel centres, align_corners=False): bilinear
    sampling reproduces it exactly wherever the sample point stays between pixel centres."""
    coord = (torch.arange(side, dtype=torch.float32) * 2 + 1) / side - 1
    img = c + a * coord[None, :] + b * coord[:, None]
    return img.expand(n, 1, side, side).clone()


def _coords(side: int = SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    coord = (torch.arange(side, dtype=torch.float32) * 2 + 1) / side - 1
    return coord[None, :].expand(side, side), coord[:, None].expand(side, side)  # x (columns), y (rows)


def test_affine_samples_the_input_at_the_declared_map():
    """Output(p) = input(A p + shift), A = [[cos, -sin + shear], [sin, cos]] / scale: rotation (radians), shear
    factor, zoom and a shift in units of half the side, checked on a linear ramp in the centre."""
    n = 5
    angle = torch.tensor([0.3, -0.2, 0.0, 0.1, -0.4])
    shear = torch.tensor([0.0, 0.2, -0.25, 0.1, 0.05])
    scale = torch.tensor([1.0, 1.2, 0.9, 0.8, 1.1])
    shift = torch.tensor([[0.0, 0.0], [0.1, -0.05], [-0.1, 0.1], [0.05, 0.02], [0.0, -0.1]])
    a, b, c = 0.2, 0.1, 0.5
    out = U._affine(_ramp(n, a, b, c), angle, shear, scale, shift)
    x, y = _coords()
    centre = slice(5, 11)
    for i in range(n):
        cos, sin, s = math.cos(angle[i]), math.sin(angle[i]), float(scale[i])
        xs = (cos * x + (-sin + float(shear[i])) * y) / s + float(shift[i, 0])
        ys = (sin * x + cos * y) / s + float(shift[i, 1])
        want = c + a * xs + b * ys
        torch.testing.assert_close(out[i, 0, centre, centre], want[centre, centre], atol=1e-5, rtol=0)


def test_affine_quarter_turn_and_whole_pixel_shift_are_exact():
    img = torch.rand(1, 1, 8, 8)
    one, zero = torch.ones(1), torch.zeros(1)
    turned = U._affine(img, torch.full((1,), math.pi / 2), zero, one, torch.zeros(1, 2))
    assert torch.allclose(turned, torch.rot90(img, 1, dims=(2, 3)), atol=1e-5)
    # shift 0.5 (half-sides) = a quarter of the side = 2 pixels: content moves 2 pixels left, zeros enter
    moved = U._affine(img, zero, zero, one, torch.tensor([[0.5, 0.0]]))
    want = torch.zeros_like(img)
    want[..., :, :6] = img[..., :, 2:]
    assert torch.allclose(moved, want, atol=1e-5)
    identity = U._affine(img, zero, zero, one, torch.zeros(1, 2))
    assert torch.allclose(identity, img, atol=1e-6)


def test_weak_augment_is_a_pure_translation_within_max_shift():
    torch.manual_seed(0)
    n, a, b = 2000, 0.2, 0.1
    x = _ramp(n, a, b)
    out = U.weak_augment(x)
    centre = slice(6, 10)
    diff = (out - x)[:, 0, centre, centre]
    # a translation of a linear ramp adds a constant: a sx + b sy
    assert torch.allclose(diff, diff[:, :1, :1].expand_as(diff), atol=1e-5)
    g = out[:, 0, centre, centre]
    slope_x = (g[:, :, -1] - g[:, :, 0]).mean(1) / (2 * 3 / SIDE)
    slope_y = (g[:, -1, :] - g[:, 0, :]).mean(1) / (2 * 3 / SIDE)
    assert torch.allclose(slope_x, torch.full((n,), a), atol=1e-4)  # no rotation, shear or zoom
    assert torch.allclose(slope_y, torch.full((n,), b), atol=1e-4)
    # the shift along x alone: a ramp in x only
    out_x = U.weak_augment(_ramp(n, a, 0.0))
    shift_x = (out_x - _ramp(n, a, 0.0))[:, 0, 8, 8] / a / 2  # fraction of the side
    assert shift_x.abs().max() <= 0.125 + 1e-4
    assert shift_x.max() > 0.11 and shift_x.min() < -0.11  # the whole range is used, both directions
    assert abs(float(shift_x.mean())) < 0.01
    half = U.weak_augment(_ramp(n, a, 0.0), max_shift=0.05)
    assert ((half - _ramp(n, a, 0.0))[:, 0, 8, 8] / a / 2).abs().max() <= 0.05 + 1e-4


def test_augmentations_keep_values_in_unit_range():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 12, 12) * 2 - 0.5  # inputs beyond [0, 1]
    for aug in (U.weak_augment, U.strong_augment):
        out = aug(x)
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out.max() == 1.0  # clamped, not rescaled


def test_strong_augment_draws_its_parameters_from_the_declared_ranges(monkeypatch):
    seen = {}

    def spy(x, angle, shear, scale, shift):
        seen.update(angle=angle, shear=shear, scale=scale, shift=shift)
        return x

    monkeypatch.setattr(U, "_affine", spy)
    torch.manual_seed(0)
    U.strong_augment(torch.full((4000, 1, 6, 6), 0.5))
    for key, lo, hi in (("angle", -math.radians(30), math.radians(30)), ("shear", -0.3, 0.3),
                        ("scale", 0.8, 1.2), ("shift", -0.3, 0.3)):  # shift: half-sides, i.e. +-15% of the side
        v = seen[key]
        span = hi - lo
        assert v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6, key
        assert v.min() < lo + 0.02 * span and v.max() > hi - 0.02 * span, key  # uniform over the whole range
        assert abs(float(v.mean()) - (lo + hi) / 2) < 0.03 * span, key
    assert seen["shift"].shape == (4000, 2)


def test_strong_augment_contrast_and_brightness(monkeypatch):
    """Without the warp, each image is mapped affinely: out = k (x - mean) + mean + d with contrast k in
    [0.5, 1.5] and brightness d in [-0.2, 0.2] (apart from the cutout hole)."""
    monkeypatch.setattr(U, "_affine", lambda x, *args: x)
    torch.manual_seed(0)
    n = 3000
    x = 0.4 + 0.2 * torch.rand(n, 1, 5, 5)
    out = U.strong_augment(x, cutout=0.0)  # a one-pixel hole
    hole = out == 0.5
    assert (hole.flatten(1).sum(1) == 1).all()
    k, d = torch.empty(n), torch.empty(n)
    for i in range(n):
        keep = ~hole[i].flatten()
        xi, oi = x[i].flatten()[keep], out[i].flatten()[keep]
        xc = xi - xi.mean()
        k[i] = (xc * (oi - oi.mean())).sum() / (xc * xc).sum()
        d[i] = oi.mean() - k[i] * xi.mean() - (1 - k[i]) * x[i].mean()
    assert k.min() >= 0.5 - 1e-3 and k.max() <= 1.5 + 1e-3
    assert k.min() < 0.52 and k.max() > 1.48 and abs(float(k.mean()) - 1) < 0.03
    assert d.min() >= -0.2 - 1e-3 and d.max() <= 0.2 + 1e-3
    assert d.min() < -0.19 and d.max() > 0.19 and abs(float(d.mean())) < 0.01


def _holes(out: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """(first row, last row, first col, last col) of each image's 0.5-filled hole; asserts it is a rectangle."""
    boxes = []
    for m in (out[:, 0] == 0.5):
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        assert int(m.sum()) == (r1 - r0 + 1) * (c1 - c0 + 1)
        boxes.append((r0, r1, c0, c1))
    return boxes


def test_strong_augment_cutout_is_a_square_of_the_declared_side_anywhere(monkeypatch):
    monkeypatch.setattr(U, "_affine", lambda x, *args: x)
    torch.manual_seed(0)
    h, w = 28, 40
    out = U.strong_augment(torch.full((1500, 1, h, w), 0.9))  # default cutout 0.4: 0.4 x 28 = 11 pixels
    boxes = _holes(out)
    for size, lo, hi in ((h, 0, 1), (w, 2, 3)):
        lengths = [b[hi] - b[lo] + 1 for b in boxes]
        inside = [n for b, n in zip(boxes, lengths, strict=True) if b[lo] > 0 and b[hi] < size - 1]
        assert inside and set(inside) == {11}
        assert min(lengths) == 6  # a centre on the first or last row/column: half the square is cut off
        assert any(b[lo] == 0 and b[hi] == 5 for b in boxes)  # centres reach index 0 ...
        assert any(b[hi] == size - 1 and b[lo] == size - 6 for b in boxes)  # ... and the last index
    tiny = U.strong_augment(torch.full((50, 1, h, w), 0.9), cutout=0.01)  # rounds to 0: still one pixel
    assert ((tiny == 0.5).flatten(1).sum(1) == 1).all()


# ------------------------------------------------------------------------------------------ unlabelled draw

class _Lin(nn.Module):
    def __init__(self, classes: int = 3, shape=(1, 4, 4), gain: float = 1.0):
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), classes)
        with torch.no_grad():
            self.fc.weight.mul_(gain)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x):
        out = self.fc(x.flatten(1))
        self.seen.append((x.detach(), out.detach()))
        return out


def test_unlabelled_draw_size_and_empty_cases():
    torch.manual_seed(0)
    d = create_distiller("fixmatch", None, _Lin(), (1, 4, 4), unlabelled_ratio=1)
    assert d.pool_size == 0
    assert d.unlabelled_batch(3, torch.device("cpu")) is None
    d.use_unlabelled(torch.rand(10, 1, 4, 4))
    assert d.pool_size == 10
    xu, idx = d.unlabelled_batch(1, torch.device("cpu"))
    assert len(xu) == 1 and torch.equal(xu, d._pool[idx])
    xu, idx = d.unlabelled_batch(3, torch.device("cpu"))
    assert len(xu) == 3
    d.hp["unlabelled_ratio"] = 0
    assert d.unlabelled_batch(3, torch.device("cpu")) is None


# ------------------------------------------------------------------------------------------ FixMatch

def test_fixmatch_pseudo_term_is_the_confidence_masked_ce_averaged_over_all_unlabelled_images():
    torch.manual_seed(0)
    student = _Lin(gain=8.0)
    d = create_distiller("fixmatch", None, student, (1, 4, 4), threshold=0.7, unlabelled_ratio=4,
                         unlabelled_weight=2.5)
    d.use_unlabelled(torch.rand(50, 1, 4, 4))
    x, y = torch.rand(6, 1, 4, 4), torch.randint(3, (6,))
    logits, terms = d.forward_train(x, y)
    _, out = student.seen[-1]
    weak, strong = out[6:30], out[30:]
    p = F.softmax(weak, 1)
    conf, pseudo = p.max(1)
    mask = conf >= 0.7
    assert 0 < int(mask.sum()) < len(mask)  # both kinds present
    assert torch.equal(pseudo, weak.argmax(1))
    want = (F.cross_entropy(strong, pseudo, reduction="none") * mask).sum() / len(mask)
    torch.testing.assert_close(terms["pseudo"], 2.5 * want)
    torch.testing.assert_close(logits, out[:6])


def test_fixmatch_threshold_is_inclusive():
    """1(max p >= threshold): two equal logits give confidence exactly 0.5, which passes threshold 0.5."""
    student = _Lin(classes=2)
    with torch.no_grad():
        student.fc.weight.zero_()
        student.fc.bias.zero_()
    d = create_distiller("fixmatch", None, student, (1, 4, 4), threshold=0.5, unlabelled_ratio=2)
    d.use_unlabelled(torch.rand(8, 1, 4, 4))
    _, terms = d.forward_train(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(terms["pseudo"], torch.tensor(math.log(2)))


# ------------------------------------------------------------------------------------------ DistillWeighted

class _Members(nn.Module):
    """A duck-typed multi-source teacher: members, unnormalised weights, member_logits."""

    def __init__(self, weights):
        super().__init__()
        self.members = nn.ModuleList(_Lin() for _ in weights)
        self.register_buffer("weights", torch.tensor(weights))

    def member_logits(self, x):
        return torch.stack([m(x) for m in self.members])

    def forward(self, x):
        return self.member_logits(x).mean(0)


def test_distill_weighted_normalises_the_teacher_weights():
    torch.manual_seed(0)
    d = create_distiller("distill_weighted", _Members([1.0, 3.0]), _Lin(), (1, 4, 4))
    torch.testing.assert_close(d.teacher_weights(), torch.tensor([0.25, 0.75]))


def test_distill_weighted_with_a_single_plain_teacher_is_distill_nearest():
    """A teacher without members counts as K = 1: weight 1, the KD term of DistillNearest."""
    torch.manual_seed(0)
    teacher, student = _Lin(gain=3.0), _Lin()
    x, y = torch.rand(5, 1, 4, 4), torch.randint(3, (5,))
    w = create_distiller("distill_weighted", teacher, student, (1, 4, 4), temperature=3.0)
    nearest = create_distiller("distill_nearest", teacher, student, (1, 4, 4), temperature=3.0)
    torch.testing.assert_close(w.teacher_weights(), torch.tensor([1.0]))
    _, tw = w.forward_train(x, y)
    _, tn = nearest.forward_train(x, y)
    torch.testing.assert_close(tw["kd"], tn["kd"])
    assert float(tn["kd"].detach()) > 1e-3
