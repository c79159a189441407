"""Frequency-band KD: band terms against numpy KD on filtered images, Parseval split of the feature MSE,
reduction to Hinton KD, caching of the teacher's band logits, and the spatial requirement."""
from __future__ import annotations

import pytest
import torch

from kdlab.data import ArrayDataset
from kdlab.distill.methods.freq_kd import BANDS, band_mse, split_bands
from kdlab.distill.teacher_cache import TeacherCache
from kdlab.errors import ConfigError
from kdlab.fourier import high_pass, low_pass

from .helpers import IN, check_finite_gradients, check_sgd_reduces, make, np_kd

pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_bands_reconstructs_and_band_mse_splits_the_mse_by_parseval():
    x = torch.rand(3, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    lo, hi = split_bands(x, 0.4)
    assert lo.dtype == x.dtype and torch.allclose(lo + hi, x, atol=1e-6)
    a, b = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    low, high = band_mse(a, b, 0.5)
    assert (low + high).item() == pytest.approx(torch.mean((a - b) ** 2).item(), rel=1e-12)
    # a difference that is pure low frequency puts everything in the low band
    smooth = low_pass(torch.randn(4, 3, 8, 8, dtype=torch.float64), 0.3)
    lo2, hi2 = band_mse(b + smooth, b, 0.3)
    assert hi2.item() == pytest.approx(0.0, abs=1e-12) and lo2.item() > 0


def test_logit_band_terms_equal_kd_on_filtered_images():
    d = make("freq_kd", low_weight=0.5, high_weight=2.0, kd_weight=0.3, cutoff=0.4, temperature=3.0)
    step = check_finite_gradients(d, {"ce", "kd", "kd_low", "kd_high"})
    x = step.x
    with torch.no_grad():
        t, s = d.teacher.eval(), d.student
        xl, xh = low_pass(x, 0.4).float(), high_pass(x, 0.4).float()
        kd_low = np_kd(t(xl).double().numpy(), s(xl).double().numpy(), 3.0)
        kd_high = np_kd(t(xh).double().numpy(), s(xh).double().numpy(), 3.0)
        kd = np_kd(t(x).double().numpy(), s(x).double().numpy(), 3.0)
    assert step.terms["kd_low"].item() == pytest.approx(0.5 * kd_low, rel=1e-4)
    assert step.terms["kd_high"].item() == pytest.approx(2.0 * kd_high, rel=1e-4)
    assert step.terms["kd"].item() == pytest.approx(0.3 * kd, rel=1e-4)


def test_without_band_weights_it_is_hinton_kd():
    x, y = torch.randn(6, *IN), torch.arange(6)
    freq = make("freq_kd", low_weight=0.0, high_weight=0.0, temperature=4.0).eval()
    kd = make("kd", temperature=4.0).eval()
    _, ft = freq.forward_train(x, y)
    _, kt = kd.forward_train(x, y)
    assert ft["kd"].item() == pytest.approx(kt["kd"].item(), rel=1e-6)
    assert ft["ce"].item() == pytest.approx(kt["ce"].item(), rel=1e-6)
    assert ft["kd_low"].item() == ft["kd_high"].item() == 0.0


def test_teacher_band_logits_are_cached_per_sample():
    d = make("freq_kd", student="mlp")
    data = ArrayDataset(torch.rand(10, *IN), torch.arange(10) % 10)
    cache = TeacherCache.build(d, data, "cpu", batch_size=4)
    idx = torch.tensor([7, 2])
    cached, direct = cache(idx), d.teacher_forward(data.x[idx])
    assert set(cached.features) == set(BANDS)
    for k in BANDS:
        assert torch.allclose(cached.features[k], direct.features[k], atol=1e-5)
    check_sgd_reduces(d, ["kd_low", "kd_high"], lr=0.05)


def test_feature_target_splits_the_hint_and_needs_spatial_maps():
    d = make("freq_kd", target="features", cutoff=0.5)
    step = check_finite_gradients(d, {"ce", "feat_low", "feat_high"}, extra=list(d.adapters))
    assert step.terms["feat_low"].item() > 0 and step.terms["feat_high"].item() > 0
    with pytest.raises(ConfigError, match="spatial"):
        make("freq_kd", student="mlp", target="features")
