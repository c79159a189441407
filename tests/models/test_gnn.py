"""Graph models: GCN / GraphSAGE layers equal their dense formulas, equivariance, the MLP ignores the graph."""
from __future__ import annotations

import pytest
import torch

from kdlab.data.graphs import load_graph
from kdlab.distill.graph import GraphTrainConfig, train_graph
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models.gnn import GRAPH_MODELS, create_graph_model, list_graph_models


@pytest.fixture(scope="module")
def karate():
    return load_graph("karate_club")


def _dense_adj(g) -> torch.Tensor:
    a = torch.zeros(g.num_nodes, g.num_nodes)
    a[g.edge_index[0], g.edge_index[1]] = 1
    return a


def test_gcn_layer_is_a_hat_x_w_plus_b(karate):
    torch.manual_seed(0)
    m = create_graph_model("gcn", 34, 2, layers=1, dropout=0.0)
    a = _dense_adj(karate) + torch.eye(34)
    d = a.sum(1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    lin = m.lins[0]
    assert torch.allclose(m(karate.x, karate), a_hat @ karate.x @ lin.weight.T + lin.bias, atol=1e-5)


def test_sage_layer_concatenates_self_and_neighbour_mean(karate):
    torch.manual_seed(0)
    m = create_graph_model("sage", 34, 2, layers=1, dropout=0.0)
    a = _dense_adj(karate)
    mean = (a / a.sum(1, keepdim=True)) @ karate.x
    assert torch.allclose(m(karate.x, karate), m.lins[0](torch.cat([karate.x, mean], 1)), atol=1e-5)


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_gnns_are_permutation_equivariant(name):
    g = load_graph("csbm", nodes=120, seed=0)
    torch.manual_seed(0)
    m = create_graph_model(name, g.num_features, g.num_classes, dropout=0.0).eval()
    perm = torch.randperm(g.num_nodes)
    inv = torch.argsort(perm)
    pg = type(g)(g.x[perm], g.y[perm], inv[g.edge_index], g.train_mask[perm], g.val_mask[perm], g.test_mask[perm])
    assert torch.allclose(m(pg.x, pg), m(g.x, g)[perm], atol=1e-5)


def test_mlp_ignores_the_graph_and_registry_errors(karate):
    torch.manual_seed(0)
    m = create_graph_model("mlp", 34, 2, hidden=16).eval()
    assert torch.equal(m(karate.x, karate), m(karate.x, None))
    assert not m.uses_graph and create_graph_model("gcn", 34, 2).uses_graph
    assert {"gcn", "sage", "mlp"} <= set(GRAPH_MODELS.names()) and len(list_graph_models()) >= 3
    with pytest.raises(UnknownNameError, match="gcn"):
        create_graph_model("gcnn", 34, 2)
    with pytest.raises(ConfigError, match="dropout"):
        create_graph_model("gcn", 34, 2, dropout=2.0)
    with pytest.raises(ConfigError, match="in_features"):
        create_graph_model("gcn", 0, 2)


def test_gcn_uses_the_graph_where_features_are_weak():
    g = load_graph("csbm", nodes=400, homophily=0.9, signal=0.4, seed=0)
    cfg = GraphTrainConfig(epochs=60)
    gcn = train_graph("graph_vanilla", create_graph_model("gcn", g.num_features, 4), g, config=cfg)
    mlp = train_graph("graph_vanilla", create_graph_model("mlp", g.num_features, 4), g, config=cfg)
    assert gcn.test_acc > 0.85 and gcn.test_acc > mlp.test_acc + 0.15
    assert len(gcn.history) == 60 and gcn.history[gcn.best_epoch - 1]["val/acc"] == pytest.approx(gcn.val_acc)


def test_seeded_graph_model_weights_depend_on_the_seed_only_and_leave_the_global_generator_alone():
    def weights(m):
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    torch.manual_seed(1)
    a = create_graph_model("gcn", 16, 3, seed=7)
    torch.rand(1000)  # whatever ran before does not matter
    state = torch.get_rng_state()
    b = create_graph_model("gcn", 16, 3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(create_graph_model("gcn", 16, 3, seed=8)))
    assert not torch.equal(weights(create_graph_model("gcn", 16, 3)), weights(create_graph_model("gcn", 16, 3)))
    with pytest.raises(ConfigError, match="seed"):
        create_graph_model("gcn", 16, 3, seed="7")
