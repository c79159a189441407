"""Trajectory-matching figures: the paths, distances and learning rates land in the traces unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.errors import ShapeError
from kdlab.viz.theme import STUDENT, TEACHER
from kdlab.viz.trajectories import distance_to_expert, matching_distance, trajectory_paths


def test_trajectory_paths_draw_both_paths_with_their_epochs():
    expert = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.7]])
    student = torch.tensor([[0.0, 0.0], [0.8, 0.9], [1.5, 1.4], [2.5, 1.0]])
    fig = trajectory_paths(expert, student, names=("expert", "<i>student</i>"))
    e, s = fig.data
    assert np.allclose(e.x, expert[:, 0]) and np.allclose(e.y, expert[:, 1])
    assert np.allclose(s.x, student[:, 0].numpy()) and np.allclose(s.y, student[:, 1].numpy())
    assert list(e.text) == ["0", "1", "2"] and list(s.text) == ["0", "1", "2", "3"]
    assert e.line.color == TEACHER and s.line.color == STUDENT
    assert s.name == "&lt;i&gt;student&lt;/i&gt;"  # user text shown literally
    assert fig.layout.yaxis.scaleanchor == "x"  # PCA distances are drawn to scale
    with pytest.raises(ShapeError, match="expert_2d"):
        trajectory_paths(np.zeros((3, 3)), student)


def test_matching_distance_with_and_without_the_learning_rate():
    it, loss, lr = np.arange(1, 5), np.array([0.9, 0.7, 0.6, 0.55]), np.array([0.01, 0.011, 0.012, 0.0125])
    fig = matching_distance(it, loss)
    assert len(fig.data) == 1 and np.allclose(fig.data[0].y, loss) and np.allclose(fig.data[0].x, it)
    assert fig.layout.shapes[0].y0 == 1.0  # the "no closer than the start" line
    both = matching_distance(it, loss, syn_lr=lr)
    assert np.allclose(both.data[1].y, lr) and both.data[1].yaxis == "y2"
    assert both.layout.yaxis2.overlaying == "y" and both.layout.yaxis2.side == "right"
    with pytest.raises(ShapeError, match="3 syn_lr"):
        matching_distance(it, loss, syn_lr=lr[:3])
    with pytest.raises(ShapeError, match="4 iterations but 2"):
        matching_distance(it, loss[:2])


def test_distance_to_expert_one_array_or_one_line_per_method():
    d = np.array([0.0, 0.3, 0.5])
    fig = distance_to_expert(d)
    assert np.allclose(fig.data[0].y, d) and list(fig.data[0].x) == [0, 1, 2] and fig.data[0].line.color == STUDENT
    many = distance_to_expert({"mtt": d, "ftd": d / 2})
    assert [t.name for t in many.data] == ["mtt", "ftd"] and np.allclose(many.data[1].y, d / 2)
    assert many.data[0].line.color != many.data[1].line.color
    with pytest.raises(ShapeError, match="'ftd'"):
        distance_to_expert({"ftd": np.zeros((2, 2))})
