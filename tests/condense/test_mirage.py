"""Mirage (Gupta et al., ICLR 2024): computation trees of hand-built graphs, their canonical hash, the sum
decomposition of GIN over tree roots, frequent tree-set mining against brute force and by hand, the distilled set
(determinism, files, sizes) and the ``graph_condense`` job."""
from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch

from kdlab.condense import mirage
from kdlab.condense.mirage import (
    MirageSet,
    TreeBook,
    coverage,
    covered_samples,
    distill_graphs,
    feature_labels,
    frequent_itemsets,
    train_on_mirage,
    tree_key,
    unroll,
)
from kdlab.data.graph_sets import GraphSet, from_graphs, load_graph_set
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.jobs.graph_condense import GraphCondenseJob
from kdlab.models.graph_classifiers import GraphBatch, create_graph_classifier
from kdlab.runs.job import JOBS, JobContext

# a star: centre 1 joined to 0, 2, 3; node labels 0 for the leaves, 1 for the centre
STAR = np.array([[0, 1, 1, 2, 1, 3], [1, 0, 2, 1, 3, 1]])
STAR_LABELS = np.array([0, 1, 0, 0])


@pytest.fixture(scope="module")
def motifs():
    return load_graph_set("motifs", graphs=96, seed=0)


@pytest.fixture(scope="module")
def mset(motifs):
    return distill_graphs(motifs.split("train"), threshold=0.2, max_sets=12)


def test_computation_trees_of_a_hand_built_graph():
    nodes, parent = unroll(STAR, 4, root=0, layers=2)  # 0 -> 1 -> {0, 2, 3}: the walk back to 0 is in the tree
    assert nodes.tolist() == [0, 1, 0, 2, 3] and parent.tolist() == [-1, 0, 1, 1, 1]
    nodes, parent = unroll(STAR, 4, root=1, layers=2)
    assert nodes.tolist() == [1, 0, 2, 3, 1, 1, 1] and parent.tolist() == [-1, 0, 0, 0, 1, 2, 3]
    assert unroll(STAR, 4, root=2, layers=0)[0].tolist() == [2]
    book = TreeBook()
    codes = book.encode(STAR_LABELS, STAR, layers=2)
    assert book.key(codes[0]) == "0(1(0(),0(),0()))"
    assert book.key(codes[1]) == "1(0(1()),0(1()),0(1()))"
    assert codes[0] == codes[2] == codes[3] != codes[1]  # the leaves' trees are isomorphic, the centre's is not
    for v in range(4):  # the book's key is the explicit tree's canonical string, and materialising it round-trips
        nodes, parent = unroll(STAR, 4, v, 2)
        assert book.key(codes[v]) == tree_key(STAR_LABELS[nodes], parent)
        assert tree_key(*book.materialize(codes[v])) == book.key(codes[v])


def test_tree_hash_is_invariant_to_child_order_and_separates_shapes():
    a = tree_key([0, 0, 0, 0, 0], [-1, 0, 0, 1, 1])  # root -> {x -> {leaf, leaf}, y}
    shuffled = tree_key([0, 0, 0, 0, 0], [3, 3, 0, -1, 0])  # the same tree, nodes renumbered, root last
    assert a == shuffled
    b = tree_key([0, 0, 0, 0, 0], [-1, 0, 0, 1, 2])  # root -> {x -> leaf, y -> leaf}: same size and depth
    c = tree_key([0, 0, 0, 0, 1], [-1, 0, 0, 1, 1])  # same shape as a, one label differs
    assert len({a, b, c}) == 3
    book = TreeBook()
    leaf = book.code(0, ())
    fork = book.code(0, (leaf, leaf))
    a_code = book.code(0, tuple(sorted((fork, leaf))))
    assert book.key(a_code) == a and book.code(0, tuple(sorted((leaf, fork)))) == a_code
    b_code = book.code(0, (book.code(0, (leaf,)),) * 2)
    assert b_code != a_code and book.key(b_code) == b
    # trees met in different graphs share codes: a path's end in a 3-path and in a 4-path at depth 1
    c3 = book.encode(np.zeros(3, np.int64), np.array([[0, 1, 1, 2], [1, 0, 2, 1]]), 1)
    c4 = book.encode(np.zeros(4, np.int64), np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]), 1)
    assert c3[0] == c4[0] == c4[3] and c3[1] == c4[1] == c4[2] and c3[0] != c3[1]


@pytest.mark.parametrize("name, params", [("gin", {}), ("gcn", {"norm": "mean", "readout": "sum"})])
def test_sum_pooled_embedding_is_the_sum_of_tree_root_embeddings(motifs, name, params):
    x, e = motifs.x[5].double(), motifs.edge_index[5]
    n = len(x)
    trees, offset = [], 0
    for v in range(n):  # each node's 2-hop computation tree, edges child -> parent only
        nodes, parent = unroll(e.numpy(), n, v, 2)
        child = np.arange(1, len(nodes))
        roots = torch.zeros(len(nodes), dtype=torch.bool)
        roots[0] = True
        trees.append((x[torch.from_numpy(nodes)], torch.from_numpy(np.stack([child, parent[1:]])), roots))
        offset += len(nodes)
    forest = GraphBatch.collate(trees)
    as_one = GraphBatch(forest.x, forest.edge_index, torch.zeros(offset, dtype=torch.int64), forest.roots, 1)
    m = create_graph_classifier(name, motifs.num_features, 4, seed=0, layers=2, **params).double().eval()
    graph = GraphBatch.collate([(x, e, None)])
    assert torch.allclose(m.embed(graph), m.embed(as_one), rtol=1e-12, atol=1e-12)  # Mirage's key property
    assert torch.allclose(m.embed(graph), m.embed(forest).sum(0, keepdim=True), rtol=1e-12, atol=1e-12)
    both_ways = GraphBatch(forest.x, torch.cat([forest.edge_index, forest.edge_index.flip(0)], 1), as_one.graph,
                           forest.roots, 1)
    assert not torch.allclose(m.embed(graph), m.embed(both_ways))  # undirected trees would be wrong


def test_symmetric_gcn_is_only_approximate_on_trees(motifs):
    # leaves keep their degree in the graph but have none in the tree: D^-1/2 (A + I) D^-1/2 sees the difference
    x, e = motifs.x[5].double(), motifs.edge_index[5]
    nodes, parent = unroll(e.numpy(), len(x), 0, 2)
    tree = (x[torch.from_numpy(nodes)], torch.from_numpy(np.stack([np.arange(1, len(nodes)), parent[1:]])),
            torch.arange(len(nodes)) == 0)
    m = create_graph_classifier("gcn", motifs.num_features, 4, seed=0, readout="sum").double().eval()
    h_graph = m.node_embed(GraphBatch.collate([(x, e, None)]))[0]
    assert not torch.allclose(h_graph, m.node_embed(GraphBatch.collate([tree]))[0])


def _brute_force(transactions, min_support):
    items = sorted(set().union(*transactions))
    out = {}
    for r in range(1, len(items) + 1):
        for combo in itertools.combinations(items, r):
            s = sum(set(combo) <= t for t in transactions)
            if s >= min_support:
                out[frozenset(combo)] = s
    return out


def test_frequent_itemsets_by_hand_and_against_brute_force(monkeypatch):
    trans = [{1, 2, 3}, {1, 2}, {1, 3}, {2, 3}, {1, 2, 3}]
    stats: dict = {}
    got = frequent_itemsets(trans, 3, stats=stats)
    assert stats == {"visits": 6, "complete": True}
    assert {frozenset(i): s for i, s in got} == {frozenset({1}): 4, frozenset({2}): 4, frozenset({3}): 4,
                                                  frozenset({1, 2}): 3, frozenset({1, 3}): 3, frozenset({2, 3}): 3}
    assert [s for _i, s in got] == [4, 4, 4, 3, 3, 3]  # most frequent first
    assert frequent_itemsets(trans, 2)[-1] == ((1, 2, 3), 2)
    assert [i for i, _s in frequent_itemsets(trans, 3, max_sets=2)] == [(1,), (2,)]
    assert [i for i, _s in frequent_itemsets(trans, 3, reject=lambda i: len(i) == 1)] == [(1, 2), (1, 3), (2, 3)]
    monkeypatch.setattr(mirage, "MAX_VISITS", 2)  # a search cut short keeps the most frequent and says so
    assert [i for i, _s in frequent_itemsets(trans, 3, stats=stats)] == [(1,), (2,)] and not stats["complete"]
    monkeypatch.undo()
    rng = random.Random(0)
    for _ in range(5):
        trans = [{rng.randrange(7) for _ in range(rng.randrange(1, 6))} for _ in range(12)]
        for min_support in (1, 3, 5):
            got = frequent_itemsets(trans, min_support)
            assert {frozenset(i): s for i, s in got} == _brute_force(trans, min_support)
            assert all(a[1] >= b[1] for a, b in zip(got, got[1:], strict=False))


def _tiny_set() -> GraphSet:
    graphs = [nx.cycle_graph(3), nx.cycle_graph(3), nx.path_graph(3),  # class 0
              nx.path_graph(3), nx.path_graph(3), nx.star_graph(3)]  # class 1
    feats = [np.ones((g.number_of_nodes(), 1)) for g in graphs]  # one node label: trees are shapes
    return from_graphs(graphs, [0, 0, 0, 1, 1, 1], feats, val_fraction=0.0, test_fraction=0.0)


def test_distilled_set_of_a_hand_case():
    # 1-hop trees: T1 "0(0())" (path end, star leaf), T2 "0(0(),0())" (triangle node, path middle), T3 the star's
    # centre. Class 0 graphs hold {T2}, {T2}, {T1, T2}; class 1 {T1, T2}, {T1, T2}, {T1, T3}; 2 of 3 graphs needed
    t1, t2 = "0(0())", "0(0(),0())"
    tiny = _tiny_set()
    m = distill_graphs(tiny, layers=1, threshold=0.6, max_sets=None)
    sets = {(m.set_class[i], tuple(m.tree_keys[t] for t in m.set_trees[m.set_sizes[:i].sum():][:m.set_sizes[i]]),
             m.set_support[i]) for i in range(m.num_sets)}
    assert sets == {(0, (t2,), 3), (1, (t1,), 3), (1, (t2,), 2), (1, (t1, t2), 2)}
    assert sorted(m.tree_keys) == [t1, t2] and m.tree_support.tolist() == [[1, 3], [3, 2]]
    exclusive = distill_graphs(tiny, layers=1, threshold=0.6, max_sets=None, exclusive=True)
    assert exclusive.num_sets == 2 and set(exclusive.set_class.tolist()) == {1}  # {T2} is frequent in both
    w = m.weights()
    assert np.isclose(w[m.set_class == 0].sum(), 0.5) and np.isclose(w.sum(), 1.0)  # the classes' shares
    ones = m.set_class == 1
    assert np.allclose(w[ones] / w[ones].sum(), m.set_support[ones] / m.set_support[ones].sum())  # by frequency
    # coverage: nodes whose tree is distilled: every node but the star's centre (T3)
    assert coverage(m, tiny) == pytest.approx((tiny.num_nodes - 1) / tiny.num_nodes)
    # the graphs cut down to their distinct distilled trees: a 3-path keeps T1 (its two ends) once and T2 once; a
    # 4-clique (every node has the tree T3 of the star's centre) has none and stays whole
    two = from_graphs([nx.path_graph(3), nx.complete_graph(4)], [0, 1], [np.ones((3, 1)), np.ones((4, 1))],
                      val_fraction=0.0, test_fraction=0.0)
    (x, e, roots), whole = covered_samples(m, two)
    assert len(x) == 5 and e.shape == (2, 3) and int(roots.sum()) == 2  # T1 (2 nodes) and T2 (3 nodes), once each
    assert sorted(int((e[1] == r).sum()) for r in torch.nonzero(roots).flatten()) == [1, 2]  # their roots' children
    assert whole[2] is None and torch.equal(whole[1], two.edge_index[1])
    # bytes: 5 tree nodes x 1 feature (float32) + 3 edges (2 int64) + 2 tree sizes + 5 memberships + 4 x (size,
    # class, support) + the 1 x 1 feature table
    assert m.nbytes() == 5 * 4 + 3 * 16 + 2 * 8 + 5 * 8 + 4 * 3 * 8 + 4
    assert m.compression()["compression"] == pytest.approx(tiny.nbytes() / m.nbytes())


def test_molecules_repeat_the_active_groups_tree():
    # Mirage's regime: the 2-hop tree of the active group's CH2, C(O(C), C(N, C, C)), is one tree in most active
    # molecules (its only variable atom, the skeleton atom R, is mostly C) and in no inactive one
    mols = load_graph_set("molecules", graphs=60, label_noise=0.0, heteroatoms=0.0, seed=0)
    m = distill_graphs(mols, threshold=0.5, max_sets=None)
    c, n, o = (int(np.flatnonzero((m.feature_table == np.eye(5)[a]).all(1))[0]) for a in range(3))
    group = tree_key([c, o, c, c, n, c, c], [-1, 0, 1, 0, 3, 3, 3])
    assert group in m.tree_keys
    assert m.tree_support[m.tree_keys.index(group)].tolist() == [0, 30]  # every active molecule, no inactive one
    assert coverage(m, mols) > 0.5


def test_same_seed_same_set_and_the_order_of_graphs_does_not_matter(motifs, mset):
    train = motifs.split("train")
    again = distill_graphs(train, threshold=0.2, max_sets=12)
    perm = np.random.default_rng(0).permutation(len(train))
    shuffled = distill_graphs(train.subset(perm), threshold=0.2, max_sets=12)
    for other in (again, shuffled):
        for k in MirageSet.ARRAYS:
            assert np.array_equal(getattr(mset, k), getattr(other, k)), k
        assert other.tree_keys == mset.tree_keys
    assert mset.num_sets == 12 * 4 and mset.summary()["sets_per_class"] == dict.fromkeys(motifs.classes, 12)


def test_the_seed_breaks_ties_under_the_cap():
    graphs = [nx.path_graph(2), nx.cycle_graph(3), nx.complete_graph(4)]  # one 1-hop tree each: degree 1, 2, 3
    feats = [np.ones((g.number_of_nodes(), 1)) for g in graphs]
    one_class = from_graphs(graphs * 2, [0] * 6, feats * 2, val_fraction=0.0, test_fraction=0.0)
    # the three trees tie at support 2 (no two share a graph); keeping one tree-set, the seed picks which
    picks = [distill_graphs(one_class, layers=1, threshold=0.3, max_sets=1, seed=s).tree_keys for s in range(8)]
    assert all(len(p) == 1 for p in picks) and len({p[0] for p in picks}) > 1
    assert distill_graphs(one_class, layers=1, threshold=0.3, max_sets=1, seed=3).tree_keys == picks[3]


def test_files_samples_and_training(tmp_path, motifs, mset):
    loaded = MirageSet.load(mset.save(tmp_path / "m.npz"))
    for k in MirageSet.ARRAYS:
        assert np.array_equal(getattr(loaded, k), getattr(mset, k))
    assert loaded.tree_keys == mset.tree_keys and loaded.meta == mset.meta and loaded.classes == mset.classes
    # every stored tree is some training node's computation tree, child -> parent: its root embedding is that
    # node's embedding in its graph
    train = motifs.split("train")
    labels, _table = feature_labels(train.x)
    book, where = TreeBook(), {}
    for i, (lab, e) in enumerate(zip(labels, train.edge_index, strict=True)):
        for v, code in enumerate(book.encode(lab, e.numpy(), 2).tolist()):
            where.setdefault(book.key(code), (i, v))
    gin = create_graph_classifier("gin", motifs.num_features, 4, seed=0, hidden=8).double().eval()
    for t in range(mset.num_trees):
        i, v = where[mset.tree_keys[t]]
        x, e = mset.tree(t)
        in_graph = gin.node_embed(GraphBatch.collate([(train.x[i].double(), train.edge_index[i], None)]))[v]
        assert torch.allclose(gin.node_embed(GraphBatch.collate([(x.double(), e, None)]))[0], in_graph)
    samples = mset.samples()
    assert len(samples) == mset.num_sets
    for (x, e, roots), size in zip(samples, mset.set_sizes.tolist(), strict=True):
        assert int(roots.sum()) == size and e.shape[1] == len(x) - size  # a forest: one root per tree
    model = create_graph_classifier("gin", motifs.num_features, 4, seed=0, hidden=8)
    hist = train_on_mirage(model, mset, epochs=2, val=motifs.split("val"))
    assert len(hist["loss"]) == 2 and len(hist["val_acc"]) == 2
    with pytest.raises(ConfigError, match="model: has 3 message-passing layers"):
        train_on_mirage(create_graph_classifier("gin", motifs.num_features, 4, layers=3), mset, epochs=1)


def test_bad_input_is_refused_before_any_work(motifs):
    with pytest.raises(ConfigError, match="train_set: expected a kdlab.data.graph_sets.GraphSet"):
        distill_graphs([motifs.x, motifs.edge_index])
    with pytest.raises(ConfigError, match="labels: .*got None"):
        GraphSet(motifs.x, motifs.edge_index, None)
    with pytest.raises(ConfigError, match="threshold"):
        distill_graphs(motifs, threshold=0.0)
    with pytest.raises(ConfigError, match="layers"):
        distill_graphs(motifs, layers=0)
    with pytest.raises(ConfigError, match="max_sets"):
        distill_graphs(motifs, max_sets=0)


def test_graph_condense_job_writes_and_reads(tmp_path):
    job = GraphCondenseJob()
    p = job.check(JOBS.validate("graph_condense", {"dataset_params": {"graphs": 48}, "models": ["gin"],
                                                   "epochs": 2, "threshold": 0.3, "max_sets": 6}), None)
    summary = job.run(JobContext(spec=SimpleNamespace(params=p), run_dir=tmp_path))
    art = job.read(tmp_path)
    assert art.mirage_set.num_sets > 0 and 0 <= summary["test_acc/gin/mirage"] <= 1
    assert art.table[["model", "data"]].values.tolist() == [["gin", "full"], ["gin", "mirage"]]
    assert summary["compression"] == pytest.approx(art.summary["compression"]) and 0 <= summary["coverage"] <= 1
    assert job.read(tmp_path / "nothing") is None
    with pytest.raises(UnknownNameError, match=r"params.models\[0\]"):
        job.check(JOBS.validate("graph_condense", {"models": ["gat"]}), None)
    with pytest.raises(ConfigError, match="params.dataset_params.graphs"):
        job.check(JOBS.validate("graph_condense", {"dataset_params": {"graphs": "many"}}), None)
