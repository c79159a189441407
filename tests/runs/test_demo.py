"""The main job (``kdlab demo``), shortened: both students train and the run ends with the HTML report."""
from __future__ import annotations

import json

import pytest

from kdlab.runs.demo import REPORT, run_demo

pytestmark = pytest.mark.slow


def test_demo_writes_table_results_and_report(tmp_path):
    table = run_demo(tmp_path, epochs=1, teacher_epochs=1)
    assert len(table) == 3 and table["test_acc"].between(0.0, 1.0).all()
    payload = json.loads((tmp_path / "demo.json").read_text())
    assert set(payload["runs"]) == {"vanilla", "kd"}
    html = (tmp_path / REPORT).read_text(encoding="utf-8")
    assert "demo-kd" in html and "demo-vanilla" in html and "https://" not in html.split("<body", 1)[1]
    # the report's test accuracy of the KD student is the one the table shows
    kd_acc = table.loc[[i for i in table.index if i.endswith("kd)")][0], "test_acc"]
    assert f"{kd_acc:.4f}"[:5] in html or f"{100 * kd_acc:.1f}" in html
