"""Radial FFT band decomposition: exact reconstruction, orthogonal bands, known cosines land in their band;
band accuracy curves and feature spectra on real MNIST."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.analysis.frequency import (
    FrequencyArtifacts,
    band_curves,
    feature_spectra,
    high_frequency_fraction,
    radial_spectrum,
)
from kdlab.errors import ConfigError, ShapeError
from kdlab.fourier import MAX_RADIUS, band_mask, band_pass, decompose, high_pass, low_pass, low_pass_mask
from kdlab.jobs import frequency as frequency_job
from kdlab.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def _cosine(h: int, w: int, ky: int, kx: int) -> torch.Tensor:
    m, n = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.cos(2 * math.pi * (ky * m / h + kx * n / w))


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 17, 12)])
@pytest.mark.parametrize("cutoff", [0.0, 0.13, 0.5, 1.0, MAX_RADIUS])
def test_low_plus_high_reconstructs_the_input_exactly(shape, cutoff):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo, hi = low_pass(x, cutoff), high_pass(x, cutoff)
    assert torch.allclose(lo + hi, x, atol=1e-13, rtol=0)
    # the two bands are orthogonal (disjoint frequency supports): energies add up (Parseval)
    assert torch.allclose((lo * hi).sum(dim=(-2, -1)), torch.zeros(shape[:2], dtype=torch.float64), atol=1e-10)
    assert torch.allclose(lo.pow(2).sum() + hi.pow(2).sum(), x.pow(2).sum(), rtol=1e-12)


def test_band_decomposition_sums_to_input_and_masks_partition_the_spectrum():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    bands = decompose(x, [0.2, 0.5, 0.9])
    assert len(bands) == 4
    assert torch.allclose(sum(bands), x.double(), atol=1e-12)
    masks = [band_mask(28, 28, a, b) for a, b in [(0, 0.2), (0.2, 0.5), (0.5, 0.9), (0.9, MAX_RADIUS)]]
    total = sum(m.int() for m in masks)
    assert torch.equal(total, torch.ones(28, 28, dtype=torch.int32))
    assert low_pass_mask(28, 28, 0.0).sum() == 1 and low_pass_mask(28, 28, 0.0)[0, 0]  # DC only


def test_known_cosines_are_kept_or_removed_by_their_radius():
    # 5 cycles across 28 pixels horizontally: radius (5/28)/(1/2) = 5/14 of Nyquist
    u = _cosine(28, 28, 0, 5)[None, None]
    r = 5 / 14
    assert torch.allclose(low_pass(u, r + 0.01), u, atol=1e-12)
    assert torch.allclose(low_pass(u, r - 0.01), torch.zeros_like(u), atol=1e-12)
    assert torch.allclose(high_pass(u, r - 0.01), u, atol=1e-12)
    # diagonal (3, 4) cycles: radius 2 * 5 / 28
    v = _cosine(28, 28, 3, 4)[None, None]
    assert torch.allclose(band_pass(v, 10 / 28 - 0.01, 10 / 28 + 0.01), v, atol=1e-12)
    # a constant image is pure DC: everything stays in the lowest band
    c = torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64)
    assert torch.allclose(low_pass(c, 0.0), c) and high_pass(c, 0.0).abs().max() < 1e-12


def test_radial_spectrum_puts_a_cosine_in_its_bin():
    u = _cosine(16, 16, 0, 4)[None, None].repeat(2, 3, 1, 1)  # radius 0.5
    e = radial_spectrum(u, n_bins=8)
    assert e.sum() == pytest.approx(1.0)
    assert np.argmax(e) == int(np.ceil(0.5 / MAX_RADIUS * 8)) - 1 and e.max() == pytest.approx(1.0)
    assert high_frequency_fraction(u, 0.4) == pytest.approx(1.0)
    assert high_frequency_fraction(u, 0.6) == pytest.approx(0.0, abs=1e-12)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ConfigError, match="cutoff"):
        low_pass(torch.zeros(1, 1, 4, 4), 2.0)
    with pytest.raises(ConfigError, match="edges"):
        decompose(torch.zeros(1, 1, 4, 4), [0.5, 0.2])
    with pytest.raises(ConfigError, match="filters"):
        band_curves({"teacher": torch.nn.Flatten()}, torch.zeros(2, 1, 4, 4), torch.zeros(2), filters=["mid"])
    with pytest.raises(ShapeError):
        band_curves({"teacher": torch.nn.Flatten()}, torch.zeros(2, 4, 4), torch.zeros(2))


@pytest.fixture(scope="module")
def mnist_mlp():
    """A small MLP trained on 600 real MNIST digits (plain torch loop, a few seconds)."""
    from kdlab.data import load

    torch.manual_seed(0)
    train, test = load("mnist5k", n_train=600), load("mnist5k", split="test")
    model = create("mlp", 10, (1, 28, 28), width=64)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(12):
        perm = torch.randperm(len(train))
        for i in range(0, len(train), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), test.x[:300], test.y[:300]


@pytest.mark.slow
def test_band_curves_on_mnist_show_a_low_frequency_classifier(mnist_mlp):
    model, x, y = mnist_mlp
    other = create("mlp", 10, (1, 28, 28), width=8)  # untrained: near chance, low agreement
    df = band_curves({"teacher": model, "random": other}, x, y, cutoffs=[0.25, 0.5, MAX_RADIUS])
    t = df[df.model == "teacher"].set_index(["filter", "cutoff"], drop=False)
    clean = float(df[(df.model == "teacher") & (df["filter"] == "none")].acc.iloc[0])
    assert clean > 0.8
    # keeping every frequency is the unfiltered image; agreement of the teacher with itself is 1
    assert t.loc[("low", MAX_RADIUS), "acc"] == pytest.approx(clean)
    assert (df[df.model == "teacher"].agreement == 1.0).all()
    # MNIST digits live in low frequencies (Wang et al. 2020): low-pass at half Nyquist keeps accuracy,
    # high-pass at the same cutoff destroys it
    assert t.loc[("low", 0.5), "acc"] > clean - 0.05
    assert t.loc[("high", 0.5), "acc"] < 0.5
    r = df[(df.model == "random") & (df["filter"] == "none")]
    assert float(r.agreement.iloc[0]) < 0.5


def test_feature_spectra_per_stage_and_artifacts_roundtrip(tmp_path):
    from kdlab.data import load

    x = load("mnist5k", split="test").x[:40]
    torch.manual_seed(0)
    conv = create("convnet", 10, (1, 28, 28), width=8)
    df = feature_spectra({"teacher": conv, "student": create("mlp", 10, (1, 28, 28), width=8)}, x[:40], n_bins=6)
    assert set(df.model) == {"teacher"}  # the MLP has no spatial maps: skipped
    sums = df.groupby("layer").energy.sum()
    assert list(sums.index) == ["features.0", "features.1", "features.2"]
    assert np.allclose(sums.values, 1.0)
    art = FrequencyArtifacts(spectra=df)
    frequency_job.save(art, tmp_path)
    back = frequency_job.load(tmp_path)
    assert back.bands is None and not back.heatmaps and np.allclose(back.spectra.energy, df.energy)
    assert frequency_job.load(tmp_path / "none").empty
