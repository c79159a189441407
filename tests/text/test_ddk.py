"""DDK's factor-smooth mixture update (Liu et al. 2024): r' = alpha psi / sum(psi) + (1 - alpha) / N with
psi_i = r_i exp(l_S,i / l_T,i), checked against that formula written out here; properties: uniform start, the
domain with the larger gap gains, weights sum to 1 and stay >= (1 - alpha) / N, alpha = 0 stays uniform,
history grows, NaN losses and domains without blocks handled, state round trip."""
from __future__ import annotations

import math

import pytest
import torch

from kdlab.text.ddk import DDKMixture


def _formula(r: list[float], ls: list[float], lt: list[float], alpha: float) -> list[float]:
    psi = [ri * math.exp(s / t) for ri, s, t in zip(r, ls, lt, strict=True)]
    z = sum(psi)
    return [alpha * p / z + (1 - alpha) / len(r) for p in psi]


def test_uniform_start_and_the_formula():
    m = DDKMixture(torch.ones(4, dtype=torch.bool), alpha=0.5)
    assert m.weights.tolist() == [0.25] * 4 and m.history == [[0.25] * 4]
    ls, lt = [3.0, 1.2, 1.0, 2.0], [1.0, 1.0, 1.0, 1.5]
    r = m.weights.tolist()
    for step in range(3):
        w = m.update(torch.tensor(ls, dtype=torch.float64), torch.tensor(lt, dtype=torch.float64))
        r = _formula(r, ls, lt, 0.5)
        assert w.tolist() == pytest.approx(r, rel=1e-12)
        assert float(w.sum()) == pytest.approx(1.0)
        assert min(w.tolist()) >= (1 - 0.5) / 4 - 1e-12
        assert len(m.history) == step + 2 and m.history[-1] == pytest.approx(r)
    assert int(torch.argmax(m.weights)) == 0  # the largest student/teacher ratio gets the most


def test_the_trailing_domain_gains_and_stays_bounded():
    m = DDKMixture(torch.ones(3, dtype=torch.bool), alpha=0.8)
    before = m.weights[1].item()
    for _ in range(20):
        w = m.update(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 1.0, 1.0]))
        assert w[1].item() >= before - 1e-12
        before = w[1].item()
        assert w[1] <= 0.8 + 0.2 / 3 + 1e-12 and (w >= 0.2 / 3 - 1e-12).all()
    assert w[1] > 0.7 and w[0] == pytest.approx(w[2])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_bounds_and_alpha_zero(alpha):
    m = DDKMixture(torch.ones(5, dtype=torch.bool), alpha=alpha)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        w = m.update(torch.rand(5, generator=g) * 5 + 0.5, torch.rand(5, generator=g) + 0.5)
        assert float(w.sum()) == pytest.approx(1.0) and bool((w >= (1 - alpha) / 5 - 1e-12).all())
        if alpha == 0:
            assert w.tolist() == pytest.approx([0.2] * 5)


def test_nan_domains_and_domains_without_blocks():
    available = torch.tensor([True, True, False, True])
    m = DDKMixture(available, alpha=0.5)
    assert m.weights.tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])
    ls = torch.tensor([2.0, float("nan"), float("nan"), 1.0])
    lt = torch.tensor([1.0, 1.0, 1.0, 1.0])
    w = m.update(ls, lt)
    assert torch.isfinite(w).all() and w[2] == 0 and float(w.sum()) == pytest.approx(1.0)
    # the NaN domain takes the mean factor of the known ones, (2 + 1) / 2
    ref = _formula([1 / 3] * 3, [2.0, 1.5, 1.0], [1.0] * 3, 0.5)
    assert [w[0].item(), w[1].item(), w[3].item()] == pytest.approx(ref)
    # nothing known: finite, still a distribution over the available domains
    w = m.update(torch.full((4,), float("nan")), lt)
    assert torch.isfinite(w).all() and w[2] == 0 and float(w.sum()) == pytest.approx(1.0)
    # a huge ratio does not overflow
    w = m.update(torch.tensor([1e4, 1.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert torch.isfinite(w).all() and w[0] == pytest.approx(0.5 + 0.5 / 3)


def test_state_round_trip():
    m = DDKMixture(torch.ones(3, dtype=torch.bool), alpha=0.5)
    m.update(torch.tensor([2.0, 1.0, 1.0]), torch.ones(3))
    other = DDKMixture(torch.ones(3, dtype=torch.bool), alpha=0.5)
    other.load_state(m.state())
    assert other.weights.tolist() == m.weights.tolist() and other.history == m.history
    a = m.update(torch.tensor([1.0, 3.0, 1.0]), torch.ones(3))
    b = other.update(torch.tensor([1.0, 3.0, 1.0]), torch.ones(3))
    assert a.tolist() == b.tolist()


def test_default_alpha_is_one_half():
    m = DDKMixture(torch.ones(3, dtype=torch.bool))
    ls, lt = [2.0, 1.0, 1.5], [1.0, 1.0, 1.0]
    w = m.update(torch.tensor(ls), torch.tensor(lt))
    assert w.tolist() == pytest.approx(_formula([1 / 3] * 3, ls, lt, 0.5), rel=1e-12)


def test_a_domain_without_blocks_and_a_huge_loss_ratio_leaves_the_mixture_finite():
    mix = DDKMixture(torch.tensor([True, True, False]))
    w = mix.update(torch.tensor([1.0, 2.0, 5000.0]), torch.tensor([1.0, 1.0, 1.0]))
    assert torch.isfinite(w).all() and w[2] == 0 and w[1] > w[0] and abs(float(w.sum()) - 1) < 1e-12
