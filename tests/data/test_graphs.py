"""Graph data: CSBM homophily and degree hit their targets, networkx graphs, user graphs, propagation matrices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.data.graphs import (
    GRAPHS,
    GraphData,
    csbm_probabilities,
    from_edges,
    load_graph,
    register_graph,
    split_nodes,
)
from kdlab.errors import ConfigError, ShapeError, UnknownNameError


@pytest.mark.parametrize("homophily", [0.1, 0.5, 0.9])
def test_csbm_edge_homophily_and_degree_match_their_targets(homophily):
    g = load_graph("csbm", nodes=1200, classes=3, homophily=homophily, avg_degree=10.0, seed=1)
    assert abs(g.edge_homophily() - homophily) < 0.04
    assert abs(2 * g.num_edges / g.num_nodes - 10.0) < 0.6
    assert np.bincount(g.y.numpy()).tolist() == [400, 400, 400]


def test_csbm_graph_is_undirected_without_self_loops_and_seeded():
    a = load_graph("csbm", nodes=300, seed=3)
    s, d = a.edge_index
    assert not (s == d).any()
    fwd = set(zip(s.tolist(), d.tolist(), strict=True))
    assert fwd == {(j, i) for i, j in fwd} and len(fwd) == a.edge_index.shape[1]
    b, c = load_graph("csbm", nodes=300, seed=3), load_graph("csbm", nodes=300, seed=4)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    # masks partition the nodes; 20 labelled nodes per class
    assert torch.equal(a.train_mask.int() + a.val_mask.int() + a.test_mask.int(), torch.ones(300, dtype=torch.int32))
    assert np.bincount(a.y[a.train_mask].numpy()).tolist() == [20] * 4


def test_csbm_features_carry_class_signal():
    g = load_graph("csbm", nodes=800, features=16, signal=3.0, seed=0)
    means = torch.stack([g.x[g.y == c].mean(0) for c in range(4)])
    nearest = torch.cdist(g.x, means).argmin(1)
    assert (nearest == g.y).double().mean() > 0.9
    flat = load_graph("csbm", nodes=800, features=16, signal=0.0, seed=0)
    means = torch.stack([flat.x[flat.y == c].mean(0) for c in range(4)])
    assert (means.norm(dim=1) < 0.5).all()


def test_csbm_probabilities_formula_and_limits():
    p_in, p_out = csbm_probabilities(100, 2, 4.0, 0.75)
    # expected same-class edges per node = p_in * 49, other-class = p_out * 50
    assert p_in * 49 == pytest.approx(3.0) and p_out * 50 == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="avg_degree"):
        csbm_probabilities(20, 2, 50.0, 0.5)


def test_networkx_real_graphs():
    k = load_graph("karate_club")
    assert (k.num_nodes, k.num_edges, k.num_classes) == (34, 78, 2)
    assert k.classes == ["Mr. Hi", "Officer"] and np.bincount(k.y.numpy()).tolist() == [17, 17]
    assert torch.equal(k.x, torch.eye(34))  # one-hot node identities
    d = load_graph("davis_southern_women")
    assert d.num_nodes == 32 and d.edge_homophily() == 0.0  # bipartite: every edge crosses the classes


def test_user_graph_from_edge_list_joins_the_same_api():
    edges = [(0, 1), (1, 0), (1, 2), (2, 2), (3, 4), (1, 2)]  # duplicates, both directions, a self-loop
    labels = np.array([0, 0, 1, 1, 1])
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)
    masks = (np.array([1, 0, 1, 0, 0], bool), np.array([0, 1, 0, 0, 0], bool), np.array([0, 0, 0, 1, 1], bool))
    g = from_edges(edges, labels, feats, name="mine", masks=masks)
    assert g.num_edges == 3 and g.edge_index.shape == (2, 6)
    assert g.edge_homophily() == pytest.approx(4 / 6)
    register_graph("my-graph", g)
    try:
        assert load_graph("my-graph") is g and "my-graph" in GRAPHS.names()
    finally:
        GRAPHS.remove("my-graph")
    with pytest.raises(ShapeError, match="node ids"):
        from_edges([(0, 7)], labels)
    with pytest.raises(ShapeError, match="labels"):
        from_edges([(0, 1)], np.array([0.5, 1.0]))
    with pytest.raises(ConfigError, match="train_per_class"):
        split_nodes(labels, train_per_class=3)


def test_user_graph_refuses_non_finite_features_and_labels():
    """NaN node features would make every GNN output NaN; float labels with NaN would become garbage classes."""
    labels = np.array([0, 0, 1, 1, 1])
    feats = np.ones((5, 2), np.float32)
    feats[3, 1] = np.nan
    masks = (np.array([1, 0, 1, 0, 0], bool), np.array([0, 1, 0, 0, 0], bool), np.array([0, 0, 0, 1, 1], bool))
    with pytest.raises(ConfigError, match=r"^nanfeat: 1 node feature values are NaN or infinite \(1 NaN, 0 inf\) "
                                          r"in 1 of 5 nodes, the first is node 3"):
        from_edges([(0, 1)], labels, feats, name="nanfeat", masks=masks)
    with pytest.raises(ConfigError, match=r"^nanlab: 1 labels are NaN or infinite .* the first is node 4"):
        GraphData(torch.ones(5, 2), torch.tensor([0.0, 0.0, 1.0, 1.0, float("nan")]), torch.zeros(2, 0), *masks,
                  name="nanlab")


def test_unknown_graphs_and_params_list_valid_choices():
    with pytest.raises(UnknownNameError, match="karate_club"):
        load_graph("karate")
    with pytest.raises(ConfigError, match="homophily"):
        load_graph("csbm", homophily=1.5)
    with pytest.raises(ShapeError):
        GraphData(torch.zeros(3, 2), torch.zeros(4), torch.zeros(2, 0), *(torch.zeros(4, dtype=torch.bool),) * 3)


def test_propagation_matrices_match_their_dense_formulas():
    g = load_graph("karate_club")
    a = torch.zeros(34, 34)
    a[g.edge_index[0], g.edge_index[1]] = 1
    a_loop = a + torch.eye(34)
    d = a_loop.sum(1).rsqrt()
    assert torch.allclose(g.gcn_adj.to_dense(), d[:, None] * a_loop * d[None, :], atol=1e-6)
    assert torch.allclose(g.mean_adj.to_dense(), a / a.sum(1, keepdim=True), atol=1e-6)
