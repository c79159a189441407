"""Distilled-image figures: pixels land where they belong, 1- and 3-channel, slider frames per snapshot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from kdlab.condense import nearest_real
from kdlab.errors import ShapeError
from kdlab.viz.condense import (
    accuracy_bars,
    class_grid,
    loss_curve,
    mean_vs_synthetic,
    method_comparison,
    neighbours_figure,
    snapshot_scrubber,
    tile,
)

CLASSES = ["zero", "one", "<b>two</b>"]


def _imgs(n, c=1, seed=0):
    return np.random.default_rng(seed).random((n, c, 4, 5)).astype(np.float32)


def test_tile_places_and_clips_pixels():
    a = _imgs(2, 3)
    a[1, 0, 0, 0] = 7.0  # out of range: clipped to white
    t = tile(a, 1, 2, pad=1)
    assert t.shape == (1 * 5 + 1, 2 * 6 + 1, 3)
    assert np.array_equal(t[1:5, 1:6], (a[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    assert t[1, 7, 0] == 255
    gray = tile(_imgs(1, 1), 1, 1, pad=0)
    assert (gray[..., 0] == gray[..., 2]).all()  # 1 channel shown as gray


@pytest.mark.parametrize("c", [1, 3])
def test_class_grid_rows_are_classes_and_flips_mirror(c):
    a, y = _imgs(6, c), np.array([0, 0, 1, 1, 2, 2])
    fig = class_grid(a, y, CLASSES, flips=True, scale=1)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3 * 5 + 1, 4 * 6 + 1, 3)
    img, flip = z[6:10, 1:6], z[6:10, 7:12]  # class "one", first image and its flip
    assert np.array_equal(img[:, ::-1], flip)
    assert "&lt;b&gt;two&lt;/b&gt;" in fig.layout.yaxis.ticktext  # user class names shown literally


def test_snapshot_scrubber_has_one_frame_and_step_per_snapshot():
    y = np.array([0, 1, 2])
    snaps = [(0, _imgs(3, seed=1), y), (50, _imgs(3, seed=2), y), (100, _imgs(3, seed=3), y)]
    fig = snapshot_scrubber(snaps, CLASSES)
    assert [f.name for f in fig.frames] == ["0", "50", "100"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "50", "100"]
    assert np.array_equal(np.asarray(fig.frames[1].data[0].z), tile(snaps[1][1], 3, 1, 1, None, 2))
    with pytest.raises(ShapeError):
        snapshot_scrubber([], CLASSES)


def test_neighbours_figure_shows_the_nearest_real_images():
    real = torch.from_numpy(_imgs(20))
    syn = real[[3, 11]] + 0.001  # near copies of real images 3 and 11
    idx, dist = nearest_real(syn, real, k=2)
    assert idx[:, 0].tolist() == [3, 11] and (dist[:, 0] < 0.01).all()
    fig = neighbours_figure(syn, real, idx, dist, rows=["a", "b"], scale=1)
    z = np.asarray(fig.data[0].z)
    assert np.array_equal(z[1:5, 7:12], tile(real[3:4], 1, 1, 0))
    assert fig.layout.xaxis.ticktext[0] == "synthetic"


def test_mean_vs_synthetic_first_column_is_the_class_mean():
    real, yr = _imgs(6), np.array([0, 0, 1, 1, 2, 2])
    syn, ys = _imgs(3, seed=5), np.array([0, 1, 2])
    z = np.asarray(mean_vs_synthetic(real, yr, syn, ys, CLASSES, scale=1).data[0].z)
    assert np.array_equal(z[1:5, 1:6], tile(real[:2].mean(0, keepdims=True), 1, 1, 0))


def test_loss_and_accuracy_figures():
    assert isinstance(loss_curve([1, 2, 3], [3.0, 2.0, 1.0]), go.Figure)
    table = pd.DataFrame({"mean": [0.8, 0.6], "std": [0.01, 0.02]}, index=["convnet", "mlp"])
    bars = accuracy_bars(table)
    assert list(bars.data[0].y) == pytest.approx([80.0, 60.0])


def test_method_comparison_puts_each_methods_class_images_in_its_own_block():
    a, ya = _imgs(6, seed=1), np.array([0, 0, 1, 1, 2, 2])
    b, yb = _imgs(3, seed=2), np.array([2, 1, 0])  # another method, one image per class, in another order
    fig = method_comparison({"dm": (a, ya), "<i>mtt</i>": (b, yb)}, CLASSES, per_class=4, scale=1)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3 * 5 + 1, (2 + 1 + 1) * 6 + 1, 3)  # dm's 2 columns, a blank one, mtt's 1
    px = lambda im: (np.clip(im, 0, 1).transpose(1, 2, 0).repeat(3, 2) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    assert np.array_equal(z[6:10, 7:12], px(a[3]))  # class "one", dm's second image
    assert np.array_equal(z[1:5, 19:24], px(b[2]))  # class "zero", mtt's image (its 3rd in the input)
    assert np.array_equal(z[11:15, 19:24], px(b[0]))  # class "two"
    assert (z[:, 13:18] == 255).all()  # the blank column between the blocks
    assert list(fig.layout.xaxis.ticktext) == ["dm", "&lt;i&gt;mtt&lt;/i&gt;"]
    assert fig.layout.xaxis.tickvals[0] < fig.layout.xaxis.tickvals[1]
    one = method_comparison({"dm": (a, ya)}, CLASSES, per_class=1, scale=1)
    assert np.asarray(one.data[0].z).shape == (16, 7, 3)  # per_class caps the block
    with pytest.raises(ShapeError, match="differ in shape"):
        method_comparison({"a": (a, ya), "b": (_imgs(1)[:, :, :3], [0])}, CLASSES)
