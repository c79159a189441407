from __future__ import annotations

from kdlab.cli import main


def test_report_command_writes_a_report(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(tiny_run_dir), str(tiny_run_dir), "-o", str(out), "--title", "CLI <report>"]) == 0
    html = out.read_text(encoding="utf-8")
    assert "CLI &lt;report&gt;" in html and "tiny-kd (2)" in html
    assert "report of 2 runs" in capsys.readouterr().out


def test_report_of_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html"),
                 "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "kdlab: error:" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_report_predict_adds_the_prediction_figures(tiny_run_dir, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--predict"]) == 0
    assert (run / "predictions.npz").is_file()
    html = out.read_text(encoding="utf-8")
    assert html.count("Plotly.newPlot(") == 4  # curves, per-class gap, confusion, calibration
    assert "4 figures" in capsys.readouterr().out


def test_report_of_a_store_run_by_name(tiny_run_dir, tmp_path):
    import json
    import shutil

    from kdlab.runs.store import open_store

    store = open_store(tmp_path / "store")
    results = json.loads((tiny_run_dir / "results.json").read_text())
    run_id = store.create_run(results["spec"], name="stored <run>", status="completed")
    shutil.copy(tiny_run_dir / "results.json", store.run_dir(run_id) / "results.json")
    out = tmp_path / "r.html"
    assert main(["report", "stored <run>", "-o", str(out), "--store", str(tmp_path / "store")]) == 0
    html = out.read_text(encoding="utf-8")
    assert "stored &lt;run&gt;" in html and f"store:{run_id}" in html and ">completed<" in html
