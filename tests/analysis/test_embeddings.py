"""Embeddings of tapped features: PCA against sklearn's variance, UMAP separates classes, caching per run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.analysis.embeddings import embed, embed_pair, layer_features
from kdlab.data import load
from kdlab.errors import ConfigError
from kdlab.models import create


@pytest.fixture(scope="module")
def digits():
    return load("digits", split="train", n_train=300)


def test_pca_keeps_the_top_variance_directions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) * np.array([10.0, 5.0, 0.1, 0.1, 0.1, 0.1])
    z = embed(x, "pca")
    assert z.shape == (200, 2)
    assert np.var(z[:, 0]) == pytest.approx(np.var(x[:, 0]), rel=0.05)
    assert np.var(z[:, 1]) == pytest.approx(np.var(x[:, 1]), rel=0.05)
    assert np.allclose(embed(-x, "pca"), z)  # sign fixed: the same picture for mirrored features
    with pytest.raises(ConfigError, match="umap"):
        embed(x, "tsne")


def test_layer_features_and_cache(digits, tmp_path):
    torch.manual_seed(0)
    t = create("convnet", 10, digits.in_shape, width=8, depth=2)
    s = create("mlp", 10, digits.in_shape, width=16)
    f = layer_features(t, digits, "features.1", pool="mean", max_samples=120)
    assert f.shape == (120, 8) and f.dtype == np.float64
    pair = embed_pair(t, s, digits, "features.1", "blocks.1", max_samples=120, cache_dir=tmp_path)
    assert pair.teacher.shape == (120, 2) and pair.student.shape == (120, 2)
    assert np.array_equal(pair.labels, digits.y[:120].numpy())
    files = list(tmp_path.glob("pca-*.npz"))
    assert len(files) == 1
    again = embed_pair(t, s, digits, "features.1", "blocks.1", max_samples=120, cache_dir=tmp_path)
    assert np.array_equal(again.teacher, pair.teacher)
    with torch.no_grad():
        s.head.weight.add_(1.0)  # new weights: a new cache entry
    embed_pair(t, s, digits, "features.1", "blocks.1", max_samples=120, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("pca-*.npz"))) == 2


@pytest.mark.slow
def test_umap_separates_digit_classes(digits):
    from sklearn.neighbors import KNeighborsClassifier

    x = digits.x[:300].flatten(1).numpy()
    z = embed(x, "umap", seed=0)
    y = digits.y[:300].numpy()
    acc = KNeighborsClassifier(5).fit(z[::2], y[::2]).score(z[1::2], y[1::2])
    assert z.shape == (300, 2) and acc > 0.8  # neighbourhoods of raw digits survive in 2-D
