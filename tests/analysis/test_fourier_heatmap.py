"""Fourier heat maps: the basis, the exact map of a linear model, batching, each basis image used once."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.analysis.fourier_heatmap import (
    FourierHeatmap,
    basis_image,
    basis_images,
    fourier_heatmap,
    unique_frequencies,
)
from kdlab.analysis.frequency import FrequencyArtifacts
from kdlab.errors import ConfigError, ShapeError
from kdlab.jobs import frequency as frequency_job

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("h,w", [(6, 6), (5, 8), (28, 28)])
def test_basis_images_have_unit_norm_and_the_unique_ones_are_orthonormal(h, w):
    u, freqs = basis_images(h, w)
    flat = u.reshape(len(u), -1)
    assert torch.allclose(flat.norm(dim=1), torch.ones(len(u), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(flat @ flat.T, torch.eye(len(u), dtype=torch.float64), atol=1e-10)
    # one per conjugate pair: self-conjugate frequencies (2k = 0 mod size) counted once
    self_conj = len([i for i in range(h) if (2 * i) % h == 0]) * len([j for j in range(w) if (2 * j) % w == 0])
    assert len(freqs) == (h * w + self_conj) // 2


def test_basis_image_dft_lives_on_the_frequency_and_its_mirror_only():
    h, w, i, j = 8, 8, 2, 3
    spec = torch.fft.fft2(basis_image(h, w, i, j)).abs()
    support = {tuple(map(int, t)) for t in torch.nonzero(spec > 1e-9)}
    assert support == {(i, j), ((-i) % h, (-j) % w)}
    assert torch.allclose(basis_image(h, w, i, j), basis_image(h, w, (-i) % h, (-j) % w), atol=1e-12)
    with pytest.raises(ConfigError, match="outside"):
        basis_image(h, w, 8, 0)


def test_linear_model_change_map_equals_the_norm_of_w_transpose_u():
    torch.manual_seed(0)
    h = w = 6
    lin = nn.Linear(h * w, 4)
    model = nn.Sequential(nn.Flatten(), lin).double()
    x, y = torch.rand(7, 1, h, w, dtype=torch.float64), torch.randint(0, 4, (7,))
    eps = 0.8
    hm = fourier_heatmap(model, x, y, eps=eps, clip=None, batch_size=50)
    weight = lin.weight.detach().T  # (D, K): the map x -> W^T x
    expected = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            expected[i, j] = torch.linalg.vector_norm(weight.T @ basis_image(h, w, i, j).reshape(-1)).item()
    expected = np.fft.fftshift(expected)
    assert np.allclose(hm.change, eps * expected, rtol=1e-9)
    assert np.allclose(hm.change_normalized, expected / expected.max(), rtol=1e-9)
    # centred layout: DC in the middle, the map is point-symmetric about it
    assert hm.frequencies[0][h // 2] == 0 and hm.frequencies[1][w // 2] == 0
    assert np.allclose(hm.change[1:, 1:], hm.change[1:, 1:][::-1, ::-1])


class _Counting(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.seen, self.calls = inner, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        self.calls += 1
        return self.inner(x)


def test_each_basis_image_is_applied_once_per_image_in_batches_and_batching_does_not_change_the_map():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 3, (10,))
    model = _Counting(net)
    small = fourier_heatmap(model, x, y, eps=2.0, batch_size=40)
    n_unique = len(unique_frequencies(8, 8))
    assert model.seen == 10 * (n_unique + 1)  # every (image, unique basis) once, plus the clean pass
    assert model.calls < n_unique  # batched: several basis images per forward
    big = fourier_heatmap(net, x, y, eps=2.0, batch_size=1000)
    assert np.allclose(small.error, big.error) and np.allclose(small.change, big.change, rtol=1e-5)
    assert small.n_images == 10 and 0.0 <= small.error.min() and small.error.max() <= 1.0


def test_error_map_limits_and_validation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(12, 1, 4, 4)
    y = net(x).argmax(1)  # labels the model gets right: clean error 0
    tiny = fourier_heatmap(net, x, y, eps=1e-6)
    assert tiny.clean_error == 0.0 and tiny.error.max() == 0.0
    huge = fourier_heatmap(net, x, y, eps=1e3, clip=None)
    assert huge.error.mean() > 0.2  # a huge perturbation flips many predictions
    centres, prof = huge.band_profile(4)
    assert len(centres) == len(prof) == 4
    with pytest.raises(ConfigError, match="eps"):
        fourier_heatmap(net, x, y, eps=0)
    with pytest.raises(ShapeError):
        fourier_heatmap(net, x[:, 0], y)


def test_heatmaps_roundtrip_through_run_artifacts(tmp_path):
    hm = FourierHeatmap(np.random.rand(5, 5), np.random.rand(5, 5), 4.0, 9, 0.1)
    frequency_job.save(FrequencyArtifacts(heatmaps={"teacher": hm, "KD <student>": hm}), tmp_path)
    back = frequency_job.load(tmp_path).heatmaps
    assert list(back) == ["teacher", "KD <student>"]
    assert np.allclose(back["teacher"].error, hm.error) and back["KD <student>"].n_images == 9
