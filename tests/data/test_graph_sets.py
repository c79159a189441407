"""Graph-classification sets: the planted motif is what the class says, molecules obey valence and their label rule,
degree features, stratified seeded splits, user graphs (networkx or edge-index pairs) and the errors that stop bad
input before any work."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from kdlab.data.graph_sets import (
    ATOMS,
    GRAPH_SETS,
    MOTIFS,
    GraphSet,
    amino_alcohol,
    from_graphs,
    list_graph_sets,
    load_graph_set,
    register_graph_set,
    stratified_split,
)
from kdlab.errors import ConfigError, ShapeError, UnknownNameError


@pytest.fixture(scope="module")
def small():
    return load_graph_set("motifs", graphs=80, seed=3)


def _nx(gs: GraphSet, i: int) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(len(gs.x[i])))
    g.add_edges_from(gs.edge_index[i].T.tolist())
    return g


def test_motifs_edges_features_and_splits(small):
    assert len(small) == 80 and small.classes == ["house", "cycle6", "clique4", "grid"]
    assert small.class_counts().tolist() == [20, 20, 20, 20]
    for x, e in zip(small.x, small.edge_index, strict=True):
        src, dst = e
        assert not (src == dst).any()  # no self-loops
        pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
        assert all((b, a) in pairs for a, b in pairs) and len(pairs) == e.shape[1]  # both directions, no repeats
        deg = np.bincount(src.numpy(), minlength=len(x))
        assert torch.equal(x, torch.eye(4)[np.minimum(deg, 3)])  # one-hot of the degree clipped at 3
    parts = [small.splits[s] for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(80))  # a partition
    for idx, per_class in zip(parts, (14, 2, 4), strict=True):  # stratified: 70/10/20 % of each class's 20
        assert np.bincount(small.y[idx].numpy(), minlength=4).tolist() == [per_class] * 4
    again, other = load_graph_set("motifs", graphs=80, seed=3), load_graph_set("motifs", graphs=80, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(small.edge_index, again.edge_index, strict=True))
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(small.edge_index, other.edge_index,
                                                                            strict=True))
    test = small.split("test")
    assert len(test) == 16 and torch.equal(test.y, small.y[torch.from_numpy(small.splits["test"])])


def test_the_planted_motif_sets_the_clique_number():
    # BA base graphs with one edge per new node are trees (no triangle): without noise and distractors the
    # largest clique is the class motif's: house 3 (its roof), cycle6 2, clique4 4, grid 2
    gs = load_graph_set("motifs", graphs=40, noise_edges=0.0, distractors=0, seed=1)
    expected = {"house": 3, "cycle6": 2, "clique4": 4, "grid": 2}
    for i in range(len(gs)):
        g = _nx(gs, i)
        assert max(len(c) for c in nx.find_cliques(g)) == expected[gs.classes[int(gs.y[i])]]
        k, medges = MOTIFS[gs.classes[int(gs.y[i])]]
        assert len(gs.x[i]) - k >= 12 and g.number_of_edges() == (len(gs.x[i]) - k - 1) + len(medges) + 1


def test_noise_and_distractors_add_edges_and_nodes():
    plain = load_graph_set("motifs", graphs=40, noise_edges=0.0, distractors=0, seed=1)
    busy = load_graph_set("motifs", graphs=40, noise_edges=0.5, distractors=2, seed=1)
    assert busy.num_nodes > plain.num_nodes and busy.num_edges > 1.3 * plain.num_edges


def _atoms(gs: GraphSet, i: int) -> list[str]:
    assert torch.equal(gs.x[i].sum(1), torch.ones(len(gs.x[i])))  # one-hot: one atom type per node
    return [ATOMS[t] for t in gs.x[i].argmax(1).tolist()]


def _chains(g: nx.Graph, atoms: list[str], carbons: int) -> bool:
    """An N and an O joined by a path through exactly ``carbons`` carbons (and nothing else)."""
    for n in (v for v in g if atoms[v] == "N"):
        for o in (v for v in g if atoms[v] == "O"):
            for path in nx.all_simple_paths(g, n, o, cutoff=carbons + 1):
                if len(path) == carbons + 2 and all(atoms[v] == "C" for v in path[1:-1]):
                    return True
    return False


def test_molecules_obey_valence_and_the_label_rule():
    gs = load_graph_set("molecules", graphs=40, label_noise=0.0, seed=1)
    assert gs.classes == ["inactive", "active"] and gs.class_counts().tolist() == [20, 20]
    valence = {"C": 4, "N": 3, "O": 2, "S": 2, "Cl": 1}
    decoys = {1: 0, 3: 0}
    for i in range(len(gs)):
        g, atoms = _nx(gs, i), _atoms(gs, i)
        assert 10 <= len(atoms) <= 25 and nx.is_connected(g)
        assert all(g.degree(v) <= valence[a] for v, a in enumerate(atoms))  # so degree <= 4
        assert g.number_of_edges() - len(g) + 1 <= 2  # at most 2 rings ...
        assert nx.girth(g) >= 5  # ... of 5 or more atoms
        assert {"N", "O"} <= set(atoms)  # the planted group: active or decoy, both have an N and an O
        assert _chains(g, atoms, 2) == bool(gs.y[i])  # the rule: an N-C-C-O chain
        if not gs.y[i]:
            decoys[1] += _chains(g, atoms, 1)
            decoys[3] += _chains(g, atoms, 3)
    assert decoys[1] > 0 and decoys[3] > 0  # both decoys occur among the inactive molecules
    again, other = (load_graph_set("molecules", graphs=40, label_noise=0.0, seed=s) for s in (1, 2))
    assert all(torch.equal(a, b) for a, b in zip(gs.x + gs.edge_index, again.x + again.edge_index, strict=True))
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(gs.x, other.x, strict=True))


def test_the_label_rule_by_hand():
    def chains(atoms: str) -> int:  # a chain of one-letter atoms (S stands for any other heteroatom)
        types = ["CNOS".index(a) for a in atoms]
        return amino_alcohol(types, [{j for j in (i - 1, i + 1) if 0 <= j < len(atoms)} for i in range(len(atoms))])

    assert chains("NCCO") == 1 and chains("CNCCOC") == 1 and chains("OCCN") == 1 and chains("NCCOCCN") == 2
    assert chains("NCO") == 0 and chains("NCCCO") == 0 and chains("NCNO") == 0 and chains("NSCO") == 0
    assert chains("NCCS") == 0 and chains("CCCC") == 0 and chains("NCCN") == 0


def test_molecules_label_noise_flips_that_share():
    clean = load_graph_set("molecules", graphs=40, label_noise=0.0, seed=0)
    noisy = load_graph_set("molecules", graphs=40, label_noise=0.25, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(clean.x, noisy.x, strict=True))  # the same molecules
    assert int((clean.y != noisy.y).sum()) == 10
    with pytest.raises(ConfigError, match="params.min_atoms"):
        load_graph_set("molecules", min_atoms=20, max_atoms=12)
    with pytest.raises(ConfigError, match="params.heteroatoms"):
        load_graph_set("molecules", heteroatoms=0.9)


def test_from_graphs_networkx_and_pairs():
    graphs = [nx.cycle_graph(5), (np.array([[0, 1], [1, 2]]), 3), nx.path_graph(["a", "b"])]
    gs = from_graphs(graphs, [0, 1, 1], max_degree=2, val_fraction=0.0, test_fraction=0.0)
    assert [len(x) for x in gs.x] == [5, 3, 2] and gs.num_edges == 5 + 2 + 1
    assert gs.x[1].argmax(1).tolist() == [1, 2, 1]  # path 0-1-2 from a (2, E) edge index
    assert gs.nbytes() == (5 + 3 + 2) * 3 * 4 + 2 * (5 + 2 + 1) * 2 * 8 + 3 * 8
    feats = [np.ones((5, 2)), np.zeros((3, 2)), np.ones((2, 2))]
    assert torch.equal(from_graphs(graphs, [0, 1, 1], feats, val_fraction=0.0, test_fraction=0.0).x[1],
                       torch.zeros(3, 2))


def test_missing_labels_stop_before_any_work():
    bad_graphs = [object(), object()]  # would fail to convert: the labels error comes first
    with pytest.raises(ConfigError, match="labels: .*one class label per graph, got None"):
        from_graphs(bad_graphs, None)
    with pytest.raises(ConfigError, match=r"labels: .*expected 2 labels \(one per graph\)"):
        from_graphs(bad_graphs, [0, 1, 1])
    with pytest.raises(ConfigError, match="labels: .*not whole numbers"):
        from_graphs(bad_graphs, [0.5, 1.0])
    with pytest.raises(ConfigError, match="labels"):
        GraphSet([torch.ones(2, 1)], [torch.zeros(2, 0, dtype=torch.long)], None)


def test_bad_graphs_name_the_graph():
    with pytest.raises(ShapeError, match=r"graphs\[1\]: has no nodes"):
        from_graphs([nx.path_graph(2), nx.Graph()], [0, 1])
    with pytest.raises(ShapeError, match=r"graphs\[0\]: .*\[0, 3\)"):
        from_graphs([(np.array([[0], [5]]), 3)], [0])
    with pytest.raises(ShapeError, match=r"graphs\[0\].edge_index refers to nodes outside \[0, 2\)"):
        GraphSet([torch.ones(2, 1)], [torch.tensor([[0], [2]])], [0])
    with pytest.raises(ShapeError, match=r"features\[0\]: expected \(3, F\)"):
        from_graphs([nx.path_graph(3)], [0], [np.ones((2, 1))])
    with pytest.raises(ConfigError, match=r"graphs\[0\]: expected a networkx graph"):
        from_graphs(["nope"], [0])


def test_registry_params_and_user_sets(small):
    assert {"motifs", "molecules"} <= set(list_graph_sets())
    with pytest.raises(UnknownNameError, match="motifs"):
        load_graph_set("motif")
    with pytest.raises(ConfigError, match="params.noise_edges"):
        load_graph_set("motifs", noise_edges=-1.0)
    with pytest.raises(ConfigError, match="params.motifs"):
        load_graph_set("motifs", motifs=["house", "hexagon"])
    with pytest.raises(ConfigError, match="params.distractor_motifs"):
        load_graph_set("motifs", motifs=["house", "triangle"])
    with pytest.raises(ConfigError, match="test_fraction: class"):
        stratified_split([0, 0, 1, 1], 0.3, 0.3)
    register_graph_set("my-motifs", small, replace=True)
    try:
        assert load_graph_set("my-motifs") is small
    finally:
        GRAPH_SETS.remove("my-motifs")
