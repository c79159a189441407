"""Graph classifiers: GIN / GCN layers equal their dense formulas, block-diagonal batching has no cross-talk, the
readout pools only roots, training is seeded, draws follow the weights, and validation keeps the best epoch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlab.data.graph_sets import load_graph_set
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models.graph_classifiers import (
    GraphBatch,
    create_graph_classifier,
    graph_accuracy,
    list_graph_classifiers,
    train_graph_classifier,
)

# a triangle 0-1-2 with a tail 2-3, both directions of every edge; 2 features
X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
E = torch.tensor([[0, 1, 1, 2, 0, 2, 2, 3], [1, 0, 2, 1, 2, 0, 3, 2]])
A = torch.zeros(4, 4, dtype=torch.float64)
A[E[1], E[0]] = 1.0


@pytest.fixture(scope="module")
def motifs():
    return load_graph_set("motifs", graphs=120, seed=0)


def test_gin_layer_and_sum_readout_equal_the_dense_formula():
    m = create_graph_classifier("gin", 2, 3, seed=0, layers=1, hidden=5).double().eval()
    lin1, lin2 = m.convs[0][0], m.convs[0][2]
    with torch.no_grad():
        m.eps[0] = 0.5
    h = F.relu(lin2(F.relu(lin1(1.5 * X + A @ X))))  # MLP((1 + eps) x + sum of neighbours), then ReLU
    batch = GraphBatch.collate([(X, E, None)])
    assert torch.allclose(m.node_embed(batch), h)
    assert torch.allclose(m.embed(batch), h.sum(0, keepdim=True))
    assert torch.allclose(m(batch), m.head(h.sum(0, keepdim=True)))


def test_gcn_layer_and_mean_readout_equal_the_dense_formula():
    m = create_graph_classifier("gcn", 2, 3, seed=0, layers=1, hidden=5).double().eval()
    a = A + torch.eye(4, dtype=torch.float64)
    d = a.sum(1).rsqrt()
    h = F.relu((d[:, None] * a * d[None, :]) @ X @ m.convs[0].weight.T + m.convs[0].bias)
    batch = GraphBatch.collate([(X, E, None)])
    assert torch.allclose(m.embed(batch), h.mean(0, keepdim=True))
    row = create_graph_classifier("gcn", 2, 3, seed=0, layers=1, hidden=5, norm="mean").double().eval()
    h_row = F.relu((a / a.sum(1, keepdim=True)) @ X @ row.convs[0].weight.T + row.convs[0].bias)
    assert torch.allclose(row.node_embed(batch), h_row)


@pytest.mark.parametrize("name", ["gin", "gcn"])
def test_batching_has_no_cross_talk_and_is_permutation_invariant(name):
    m = create_graph_classifier(name, 2, 3, seed=1, hidden=8).double().eval()
    other = (X[:2].flip(0), torch.tensor([[0, 1], [1, 0]]), None)
    alone = m(GraphBatch.collate([(X, E, None)]))
    both = m(GraphBatch.collate([other, (X, E, None)]))
    assert torch.allclose(both[1], alone[0])
    perm = torch.tensor([2, 0, 3, 1])
    inv = torch.argsort(perm)
    assert torch.allclose(m(GraphBatch.collate([(X[perm], inv[E], None)])), alone)


def test_readout_pools_only_the_roots():
    m = create_graph_classifier("gin", 2, 3, seed=0, hidden=4).double().eval()
    roots = torch.tensor([True, False, True, False])
    batch = GraphBatch.collate([(X, E, roots)])
    h = m.node_embed(batch)
    assert torch.allclose(m.embed(batch), h[[0, 2]].sum(0, keepdim=True))
    mean = create_graph_classifier("gin", 2, 3, seed=0, hidden=4, readout="mean").double().eval()
    assert torch.allclose(mean.embed(batch), h[[0, 2]].mean(0, keepdim=True))


def test_training_is_seeded_and_learns(motifs):
    train, val = motifs.split("train"), motifs.split("val")

    def fit(seed: int, epochs: int = 4, **kw) -> tuple[torch.nn.Module, dict]:
        m = create_graph_classifier("gin", motifs.num_features, motifs.num_classes, seed=0, hidden=16)
        return m, train_graph_classifier(m, train, epochs=epochs, seed=seed, **kw)

    (a, ha), (b, _hb), (c, _hc) = fit(0, val=val), fit(0, val=val), fit(1, val=val)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values(),
                                                      strict=True))
    best = ha["best_epoch"]
    assert ha["val_acc"][best] == max(ha["val_acc"]) and graph_accuracy(a, val) == ha["val_acc"][best]
    d, hd = fit(0, epochs=30)
    assert hd["loss"][-1] < 0.3 * hd["loss"][0] and graph_accuracy(d, train) > 0.5  # chance: 0.25


def test_weights_are_draw_probabilities(motifs, monkeypatch):
    train = motifs.split("train")
    seen: list[int] = []
    collate = GraphBatch.collate

    def spy(samples):
        seen.extend(len(s[0]) for s in samples)
        return collate(samples)

    monkeypatch.setattr(GraphBatch, "collate", staticmethod(spy))
    w = torch.zeros(len(train))
    w[[3, 7]] = 1.0  # only graphs 3 and 7 may be drawn
    m = create_graph_classifier("gcn", motifs.num_features, motifs.num_classes, seed=0, hidden=4)
    train_graph_classifier(m, train, weights=w, epochs=2, seed=0, epoch_size=50)
    assert len(seen) == 100 and set(seen) <= {len(train.x[3]), len(train.x[7])}


def test_bad_input_and_registry(motifs):
    train = motifs.split("train")
    m = create_graph_classifier("gin", motifs.num_features, motifs.num_classes)
    with pytest.raises(ConfigError, match="labels: .*got None"):
        train_graph_classifier(m, list(zip(train.x, train.edge_index, strict=True)), None)
    with pytest.raises(ConfigError, match=r"labels: expected 84 labels"):
        train_graph_classifier(m, train, train.y[:5])
    with pytest.raises(ConfigError, match="weights: expected 84"):
        train_graph_classifier(m, train, weights=[1.0, 2.0])
    with pytest.raises(UnknownNameError, match="gin"):
        create_graph_classifier("gine", 4, 2)
    with pytest.raises(ConfigError, match="readout"):
        create_graph_classifier("gin", 4, 2, readout="max")
    assert set(list_graph_classifiers()["name"]) >= {"gin", "gcn"}
