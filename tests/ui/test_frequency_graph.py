"""The Frequency page's GNN-to-MLP study headless: every CSBM control of its form reaches the ``graph_kd`` job (a
worker process), whose table equals the plain ``distillation_study`` call; the table shows mean ± std per model,
and a new page object on the same store shows the finished study again."""
from __future__ import annotations

import pandas as pd
import pytest

from kdlab.analysis.graph_frequency import summarize_study
from kdlab.distill.graph_study import distillation_study
from kdlab.jobs.graph_kd import graph_table
from kdlab.runs.background import RunHandle
from kdlab.ui.frequency import FrequencyPage

GRAPH = {"homophily": 0.7, "avg_degree": 4.0, "features": 64, "signal": 0.2, "nodes": 200}


def plain(**graph) -> pd.DataFrame:
    return summarize_study(distillation_study("csbm", seeds=[0], epochs=10, **graph))


@pytest.mark.timeout(300)
def test_graph_study_on_the_page_matches_the_plain_call(store):
    page = FrequencyPage(store)  # no training run: the image part says so, the graph study needs none
    assert page.images.button.disabled and "no finished run yet" in page.images.status.object
    assert not page.graphs.button.disabled and "press Run to start" in page.graphs.status.object
    for k, v in {**GRAPH, "seeds": 1, "epochs": 10}.items():
        setattr(page.graphs.form, k, v)
    task = page.compute_graph()
    assert store.get_run(task.id).spec["params"] == {**GRAPH, "seeds": 1, "epochs": 10}
    assert RunHandle(store, task.id).wait(timeout=240) == "completed", task.record.error
    page.tick()
    assert page.graphs.status.object == f"done: 1 seed(s) (job {task.id})" and not page.graphs.button.disabled
    table = page.graphs.result
    want = plain(**GRAPH)
    pd.testing.assert_frame_equal(table, want, rtol=1e-6)
    other = plain(**{**GRAPH, "features": 8})  # the controls matter
    assert not table["high_fraction"].equals(other["high_fraction"])

    panes = page.graphs.panes
    assert set(panes) == {"graph", "graph-table"} and all(p.visible for p in panes.values())
    assert panes["graph"].css_classes == ["kdlab-freq-graph-graph"]
    shown = panes["graph-table"].value
    assert list(shown["model"]) == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"]
    assert shown.equals(graph_table(table)) and shown["test_acc"].str.contains("±").all()
    bars = panes["graph"].object
    assert list(bars.data[0].x) == list(want["model"])

    again = FrequencyPage(store)  # a new session: the study's result, not a new study
    assert again.graphs.task.id == task.id and again.graphs.result is not None
    assert again.graphs.panes["graph-table"].value.equals(shown)
    assert [r.id for r in store.jobs("graph_kd")] == [task.id]
