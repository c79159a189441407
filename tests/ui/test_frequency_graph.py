"""The Frequency page's GNN-to-MLP study headless: every CSBM control reaches the background study, whose table
equals the plain ``graph_study`` call; the table shows mean ± std per model."""
from __future__ import annotations

import pandas as pd

from kdlab.ui.frequency import FrequencyPage, graph_study, graph_table

GRAPH = {"homophily": 0.7, "avg_degree": 4.0, "features": 64, "signal": 0.2}


def test_graph_study_on_the_page_matches_the_plain_call(store):
    page = FrequencyPage(store, seeds=1, graph_epochs=10, **GRAPH)
    table = page.compute_graph().result(timeout=300)
    page.tick()
    assert "done: 1 seed(s)" in page.graph_status.object and page.graph_tab.visible
    want = graph_study(None, seeds=[0], epochs=10, **GRAPH)
    pd.testing.assert_frame_equal(table, want)
    other = graph_study(None, seeds=[0], epochs=10, **{**GRAPH, "features": 8})  # the controls matter
    assert not table["high_fraction"].equals(other["high_fraction"])
    shown = page.graph_tab.value
    assert list(shown["model"]) == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"]
    assert shown.equals(graph_table(table)) and shown["test_acc"].str.contains("±").all()
