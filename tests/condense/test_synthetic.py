"""SyntheticSet: a torch Dataset, .npz round trip, PNG grid layout, 1- and 3-channel."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from kdlab.condense import SyntheticSet
from kdlab.errors import ShapeError


def _set(c: int = 1, soft: bool = False) -> SyntheticSet:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, c, 5, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    s = torch.softmax(torch.randn(6, 3, generator=g), 1) if soft else None
    return SyntheticSet(x, y, ["a", "b", "c"], (0.1,) * c, (0.3,) * c, s, {"method": "dm"})


@pytest.mark.parametrize("c,soft", [(1, False), (3, True)])
def test_npz_round_trip_keeps_everything(tmp_path, c, soft):
    s = _set(c, soft)
    back = SyntheticSet.load(s.save(tmp_path / "set.npz"))
    assert torch.equal(back.x, s.x) and torch.equal(back.y, s.y)
    assert back.classes == s.classes and back.mean == s.mean and back.meta == s.meta
    assert (back.soft is None) == (not soft) and (not soft or torch.equal(back.soft, s.soft))


def test_is_a_dataset_for_dataloaders():
    s = _set()
    xb, yb, ib = next(iter(DataLoader(s, batch_size=4)))
    assert xb.shape == (4, 1, 5, 4) and yb.tolist() == [0, 0, 1, 1] and ib.tolist() == [0, 1, 2, 3]
    assert s.ipc == 2 and s.to_array_dataset().num_classes == 3
    assert torch.allclose(s.normalized() * 0.3 + 0.1, s.x)


def test_grid_puts_class_k_image_j_at_row_k_column_j(tmp_path):
    s = _set(3)
    g = s.grid(pad=1)
    assert g.shape == (3 * 6 + 1, 2 * 5 + 1, 3) and g.dtype == np.uint8
    want = (s.x[3].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # class 1, second image
    assert np.array_equal(g[1 + 6:1 + 6 + 5, 1 + 5:1 + 5 + 4], want)
    png = Image.open(s.save_png(tmp_path / "grid.png", scale=2))
    assert png.size == (2 * g.shape[1], 2 * g.shape[0])


def test_shapes_are_checked():
    with pytest.raises(ShapeError):
        SyntheticSet(torch.zeros(2, 1, 3, 3), torch.zeros(3), ["a"])
    with pytest.raises(ShapeError, match="soft"):
        SyntheticSet(torch.zeros(2, 1, 3, 3), torch.zeros(2), ["a", "b"], soft=torch.zeros(2, 3))
