"""Analysis sections plug their figures into every run's part of a report, reading the run's own folder."""
from __future__ import annotations

import json

import plotly.graph_objects as go

from kdlab.report import REPORT_SECTIONS, build, register_report_section


def test_a_registered_section_adds_its_figures_only_where_its_artifact_exists(tmp_path, tiny_run_dir):
    import shutil

    with_artifact = tmp_path / "with"
    shutil.copytree(tiny_run_dir, with_artifact)
    (with_artifact / "artifacts").mkdir(exist_ok=True)
    (with_artifact / "artifacts" / "probe.json").write_text(json.dumps({"y": [3, 1, 2]}))

    def probe(run):
        path = run.folder / "artifacts" / "probe.json" if run.folder else None
        if path is None or not path.is_file():
            return []
        y = json.loads(path.read_text())["y"]
        return [("probe", "probe figure", go.Figure(go.Bar(y=y)))]

    register_report_section("probe", probe)
    try:
        html = build([with_artifact, tiny_run_dir])
        assert html.count('id="kdlab-run0-probe"') == 1  # the run with the artifact
        assert 'id="kdlab-run1-probe"' not in html  # the run without it: no empty figure
    finally:
        REPORT_SECTIONS.pop("probe")
