"""Mirage figures: the layered tree layout, one panel per distilled tree carrying exactly its nodes and edges,
and full-vs-distilled accuracy bars (means and stds of the table's rows)."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from kdlab.condense.mirage import distill_graphs
from kdlab.data.graph_sets import from_graphs
from kdlab.errors import ConfigError
from kdlab.viz.computation_trees import computation_trees, mirage_accuracy, tree_layout


@pytest.fixture(scope="module")
def mset():
    graphs = [nx.cycle_graph(4), nx.path_graph(4), nx.star_graph(3), nx.path_graph(3), nx.star_graph(4),
              nx.cycle_graph(5)]
    return distill_graphs(from_graphs(graphs, [0, 0, 0, 1, 1, 1], val_fraction=0.0, test_fraction=0.0,
                                      classes=["rings <b>", "stars"]), layers=2, threshold=0.3, max_sets=None)


def test_tree_layout_puts_the_root_on_top_over_its_children():
    #      0
    #    1   2
    #   3 4   5
    x, y = tree_layout([-1, 0, 0, 1, 1, 2])
    assert y.tolist() == [0, -1, -1, -2, -2, -2]
    assert x[[3, 4, 5]].tolist() == [0, 1, 2]  # leaves one apart, left to right
    assert x[1] == 0.5 and x[2] == 2 and x[0] == (x[1] + x[2]) / 2
    with pytest.raises(ConfigError, match="exactly one root"):
        tree_layout([-1, -1])


def test_one_panel_per_tree_with_its_nodes_edges_and_frequency(mset):
    fig = computation_trees(mset, per_class=2, feature_names=["deg 0", "deg 1", "deg 2", "deg 3", "deg 4", "deg 5"])
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 4 and sum("rings &lt;b&gt;" in t for t in titles) == 2  # class names shown literally
    starts = np.concatenate([[0], np.cumsum(mset.set_sizes)])
    for panel, title in enumerate(titles, start=1):
        axis = "x" if panel == 1 else f"x{panel}"
        traces = [t for t in fig.data if t.xaxis == axis]
        tree = traces[1].meta["tree"]
        c = mset.classes.index(traces[1].meta["class"])
        assert f"in {mset.tree_support[tree, c]}/3 graphs" in title
        assert any(tree in mset.set_trees[starts[s]:starts[s + 1]] for s in np.flatnonzero(mset.set_class == c))
        nodes = sum(len(t.x) for t in traces if t.mode == "markers")
        edges = sum(1 for t in traces if t.mode == "lines" for v in t.x if v is None)
        assert nodes == mset.tree_nodes[tree] and edges == nodes - 1
        roots = [t for t in traces if t.mode == "markers" and any("(root)" in s for s in t.text)]
        assert len(roots) == 1
    legend = {t.name for t in fig.data if t.showlegend}
    assert legend <= {"deg 1", "deg 2", "deg 3", "deg 4"} and legend


def test_panels_pick_each_class_s_most_frequent_trees(mset):
    fig = computation_trees(mset, per_class=1)
    starts = np.concatenate([[0], np.cumsum(mset.set_sizes)])
    assert len(fig.layout.annotations) == 2
    for c in (0, 1):  # one panel per class, in class order
        used = {int(t) for s in np.flatnonzero(mset.set_class == c) for t in mset.set_trees[starts[s]:starts[s + 1]]}
        best = max(mset.tree_support[t, c] for t in used)
        assert f"in {best}/3 graphs" in fig.layout.annotations[c].text


def test_accuracy_bars_are_means_with_std(mset):
    table = pd.DataFrame({"model": ["gcn", "gcn", "gcn", "gin", "gin", "gin"],
                          "data": ["full", "mirage", "mirage", "full", "mirage", "mirage"],
                          "test_acc": [0.8, 0.6, 0.7, 0.9, 0.5, 0.7]})
    fig = mirage_accuracy(table)
    full, distilled = fig.data
    assert list(full.x) == ["gcn", "gin"] and np.allclose(full.y, [80, 90])
    assert np.allclose(distilled.y, [65, 60]) and np.allclose(distilled.error_y.array, [np.std([60, 70], ddof=1),
                                                                                        np.std([50, 70], ddof=1)])
    with pytest.raises(ConfigError, match="missing columns"):
        mirage_accuracy(table.drop(columns="data"))
