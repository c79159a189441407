"""The main job (``kdlab demo``), shortened: its runs are jobs in the store, it shows progress, and its report has
the accuracies, the CKA grid and the band curves of what the KD student took."""
from __future__ import annotations

import io
import json
import re

import pytest

from kdlab.demo import REPORT, follow, run_demo
from kdlab.runs.background import submit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_demo_records_its_jobs_and_reports_what_was_transferred(store, tmp_path):
    out = io.StringIO()
    table = run_demo(tmp_path / "demo", epochs=1, teacher_epochs=1, store=store, stream=out,
                     analysis={"cka": {"max_samples": 100}, "frequency": {"n_images": 50, "heatmap_images": 4}})
    assert len(table) == 3 and table["test_acc"].between(0.0, 1.0).all()
    runs = store.list_runs().set_index("name")
    assert set(runs.index) >= {"demo-kd", "demo-vanilla"}
    assert sorted(runs["kind"]) == ["cka", "frequency", "train", "train"]
    assert (runs["status"] == "completed").all() and all("demo" in t for t in runs["tags"])
    log = out.getvalue().splitlines()  # not a terminal: one line per step
    assert any(re.match(r"\[(kd|vanilla)\] (teacher|student): epoch \d/1", line) for line in log)  # whoever trains
    assert "[cka] completed" in log and "[kd] completed" in log  # the teacher first, the other waits for its cache
    freq = runs.loc[[n for n in runs.index if n.startswith("frequency-")][0], "id"]
    assert "Fourier heat map: teacher" in set(store.logs(freq)["message"])  # its progress reached the store
    payload = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert set(payload["runs"]) == {"vanilla", "kd"} and set(payload["analyses"]) == {"cka", "frequency"}
    html = (tmp_path / "demo" / REPORT).read_text(encoding="utf-8")
    assert "demo-kd" in html and "demo-vanilla" in html and "https://" not in html.split("<body", 1)[1]
    assert "CKA teacher x student (100 samples" in html and "low-pass filtered inputs" in html
    kd_acc = table.loc[[i for i in table.index if i.endswith("kd)")][0], "test_acc"]
    assert kd_acc == payload["runs"]["kd"]["student"]["test/acc"]
    assert f"{kd_acc:.4f}"[:5] in html or f"{100 * kd_acc:.1f}" in html


def test_follow_reports_a_failed_job(store):
    h = submit("graph_kd", store, nodes=30, epochs=1, device="cpu")  # too few nodes per class: fails in the worker
    out = io.StringIO()
    assert follow({"study": h}, out, poll_s=0.1) == {"study": "failed"}
    assert "[study] failed: ConfigError: train_per_class" in out.getvalue()
