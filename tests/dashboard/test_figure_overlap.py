"""No text of a plotly figure overlaps another: on every dashboard page at 1280 and 1920 px, and in every
``kdlab.viz`` figure at the widths those pages give a figure.

The dashboard is served on a store with two completed runs that logged their metrics (so the runs, compare and
run detail pages draw curves, and the analysis pages offer the runs). For every page (``kdlab.ui.pages.pages()``,
the tabs) at each width, the bounding boxes of the SVG ``text`` elements of every visible ``.js-plotly-plot``
are read: figure title, subplot titles and other annotations, axis titles, tick labels, legend entries,
colour-bar labels. Two of them of the same figure that overlap by more than ``TOLERANCE_PX`` in both
directions fail the test, naming the page, width, figure and the two texts (a full-page screenshot is saved in
``test-artifacts/screenshots``). Hidden or empty texts, hidden figures (pages hide a figure until it has a
result) and the hover layer are ignored. Tick labels of one axis are included: a correct plot never draws
them on top of each other. Boxes are the texts' own rectangles as drawn (a slanted tick label is a slanted
rectangle), so labels that plotly.js rotates apart do not count as overlapping.

The analysis pages draw their figures only once an analysis ran; ``test_viz_figures_...`` draws each
``kdlab.viz`` builder's figure from small, realistic inputs (10 classes, ResNet/MLP layer names, long source
names) in the same browser, at a half-page and a full-page width, with the same check.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from dashboard_helpers import TINY_SPEC, start_server, stop_server

pytestmark = [pytest.mark.slow]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(300))

WIDTHS = (1280, 1920)  # the narrowest and widest desktop layouts (1500 px dropped: the suite's time budget)
HEIGHT = 1300
TOLERANCE_PX = 1.5

# every visible plotly figure (Panel renders into shadow roots: walk them) and the overlapping text pairs
OVERLAPS_JS = """(tol) => {
  const figures = [];
  const walk = (root) => {
    root.querySelectorAll('*').forEach((el) => {
      if (el.classList && el.classList.contains('js-plotly-plot')) figures.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    });
  };
  walk(document);
  const shown = (el) => el.checkVisibility({opacityProperty: true, visibilityProperty: true});
  const name = (t) => {
    const g = t.closest('[class]');
    const kind = t.getAttribute('class') || (g && g.getAttribute('class')) || 'text';
    return `${kind} "${t.textContent.trim().slice(0, 60)}"`;
  };
  // a text's box as drawn: its own (unrotated) box through its transform to the screen, so rotated tick
  // labels are their slanted rectangles, not the larger upright boxes around them
  const corners = (t) => {
    const b = t.getBBox(), m = t.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => new DOMPoint(x, y).matrixTransform(m)).map((p) => [p.x, p.y]);
  };
  // separating axes of two rectangles: the overlap depth along the axis where they overlap least (<= 0: apart)
  const depth = (a, b) => {
    let least = Infinity;
    for (const q of [a, b]) {
      for (let i = 0; i < 2; i++) {
        const dx = q[i + 1][0] - q[i][0], dy = q[i + 1][1] - q[i][1], len = Math.hypot(dx, dy) || 1;
        const ax = [-dy / len, dx / len];
        const proj = (p) => p.map(([x, y]) => x * ax[0] + y * ax[1]);
        const pa = proj(a), pb = proj(b);
        const lo = Math.max(Math.min(...pa), Math.min(...pb)), hi = Math.min(Math.max(...pa), Math.max(...pb));
        least = Math.min(least, hi - lo);
      }
    }
    return least;
  };
  const out = [];
  figures.forEach((gd) => {
    const r = gd.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || !shown(gd) || !gd._fullLayout) return;
    const texts = [];
    gd.querySelectorAll('svg text').forEach((t) => {
      if (!t.textContent.trim() || t.closest('.hoverlayer') || !shown(t)) return;
      const b = t.getBoundingClientRect();
      if (b.width >= 0.5 && b.height >= 0.5) texts.push({c: corners(t), name: name(t)});
    });
    const pairs = [];
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        const d = depth(texts[i].c, texts[j].c);
        if (d > tol) pairs.push(`${texts[i].name} / ${texts[j].name} (${d.toFixed(1)} px deep)`);
      }
    }
    const title = (gd.querySelector('.gtitle') || {}).textContent || '(untitled)';
    out.push({title, width: Math.round(r.width), height: Math.round(r.height), texts: texts.length, pairs});
  });
  return out;
}"""


def _settle(page, timeout: float = 20.0) -> list[dict]:
    """The figures' overlap report once the page stopped changing (same figures, sizes and texts twice)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        page.wait_for_timeout(600)
        report = page.evaluate(OVERLAPS_JS, TOLERANCE_PX)
        shape = [(f["title"], f["width"], f["height"], f["texts"]) for f in report]
        if shape == last or time.monotonic() > deadline:
            return report
        last = shape


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The dashboard on a store with two completed runs (kd, vanilla) whose epoch metrics are in the store."""
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.store import StoreCallback, open_store

    home = tmp_path_factory.mktemp("overlap") / "home"
    store = open_store(home)
    for name, method in (("overlap-kd", "kd"), ("overlap-vanilla", "vanilla")):
        spec = {**TINY_SPEC, "name": name, "method": {"name": method}, "optim": {"epochs": 3, "batch_size": 64}}
        rid = store.create_run(spec, status="running")
        result = run_experiment(spec, run_dir=store.run_dir(rid), callbacks=[StoreCallback(store, rid)])
        assert result is not None
        store.set_status(rid, "completed")
    proc, url = start_server(home)
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.mark.parametrize("width", WIDTHS)
def test_no_text_of_a_figure_overlaps_another(browser, shots, served, width):
    from kdlab.ui.pages import pages

    names = [p.name for p in pages()]
    page = browser.new_page(viewport={"width": width, "height": HEIGHT})
    try:
        page.goto(served)
        tabs = page.locator(".bk-tab")
        tabs.first.wait_for(timeout=60_000)
        assert [t.strip() for t in tabs.all_inner_texts()] == names
        problems, drawn = [], {}
        for i, name in enumerate(names):
            tabs.nth(i).click()
            report = _settle(page)
            drawn[name] = len(report)
            bad = [f for f in report if f["pairs"]]
            if bad:
                shot = shots / f"overlap-{width}-{name.replace(' ', '_')}.png"
                page.screenshot(path=str(shot), full_page=True)
                problems += [f"{name} @ {width}px, figure {f['title']!r} ({f['width']}x{f['height']}): {p}"
                             for f in bad for p in f["pairs"]]
        # the test is about drawn figures: the pages about runs must have drawn some
        assert all(drawn[n] for n in ("Runs", "Compare", "Run detail")), drawn
        assert not problems, "overlapping figure texts:\n" + "\n".join(problems)
    finally:
        page.close()


# ------------------------------------------------------------------------------ every kdlab.viz figure

FIGURE_WIDTHS = (600, 1250, 1880)  # a figure in a half-page column at 1280 px, full page at 1280 and 1920 px


def _figures() -> dict:
    """One figure per ``kdlab.viz`` builder, from small inputs shaped like the analyses' results."""
    import numpy as np
    import pandas as pd
    import torch

    from kdlab.analysis.agreement import agreement
    from kdlab.analysis.fourier_heatmap import FourierHeatmap
    from kdlab.condense import nearest_real
    from kdlab.viz import calibration, compare_runs, confusion_matrix, final_metric_bars, per_class_gap, training_curves
    from kdlab.viz import condense as vc
    from kdlab.viz import frequency as vf
    from kdlab.viz import representations as vr
    from kdlab.viz import transfer as vt

    rng = np.random.default_rng(0)
    classes = [str(i) for i in range(10)]
    y = rng.integers(0, 10, 400)
    logits_t, logits_s = rng.normal(size=(400, 10)), rng.normal(size=(400, 10))
    logits_t[np.arange(400), y] += 3
    logits_s[np.arange(400), y] += 2
    hist = [{"epoch": e, "train/ce": 2 / e, "train/kd": 1 / e, "train/loss": 3 / e, "train/acc": 0.1 * e,
             "val/acc": 0.09 * e, "val/loss": 2.5 / e, "val/agreement": 0.1 * e, "lr": 0.05 / e,
             "throughput": 30000 + 100 * e} for e in range(1, 9)]
    layers_t = ["layer1.0.conv1", "layer1.1.conv2", "layer2.0.conv1", "layer2.1.conv2", "layer3.0.conv1",
                "layer3.1.conv2", "fc"]
    layers_s = ["blocks.0", "blocks.1", "head"]
    sources = ["resnet18-imagenet", "mlp-mnist", "convnet-cifar10", "vit-tiny", "digits-teacher"]
    figs = {
        "training_curves": training_curves(hist, title="tiny-kd curves", teacher_acc=0.93),
        "compare_runs": compare_runs({f"kd-seed-{i}": hist for i in range(5)} | {"vanilla": hist}),
        "final_metric_bars": final_metric_bars(pd.DataFrame({
            "method": ["kd"] * 3 + ["vanilla"] * 3 + ["dkd"] * 3, "group": ["digits"] * 9,
            "value": rng.uniform(0.8, 0.95, 9)})),
        "calibration": calibration(logits_s, y),
        "confusion_matrix": confusion_matrix(logits_s, y, class_names=classes),
        "per_class_gap": per_class_gap(logits_t, logits_s, y, class_names=classes),
        "cka_heatmap": vr.cka_heatmap(pd.DataFrame(rng.uniform(0, 1, (7, 3)), index=layers_t, columns=layers_s),
                                      title="CKA teacher vs student"),
        "cka_over_epochs": vr.cka_over_epochs(pd.DataFrame(
            [{"epoch": e, "teacher_layer": a, "student_layer": b, "cka": rng.uniform()}
             for e in range(5) for a in layers_t[:3] for b in layers_s])),
        "embedding_scatter": vr.embedding_scatter(rng.normal(size=(400, 2)), rng.normal(size=(400, 2)), y,
                                                  class_names=classes),
        "agreement_panel": vr.agreement_panel(agreement(logits_t, logits_s, y)),
    }
    cand = pd.DataFrame({"candidate": ["mlp-8", "mlp-16", "convnet-32", "resnet8x4"], "relation": [0.1, 0.3, 0.2, 0.4],
                         "cka": [0.5, 0.2, 0.4, 0.3], "std": [0.01, 0.02, 0.01, 0.02]})
    cand.attrs["metric"] = "relation"
    figs["student_ranking"] = vr.student_ranking(cand, accuracy=pd.Series(dict(zip(cand["candidate"],
                                                                                   [0.9, 0.8, 0.85, 0.95],
                                                                                   strict=True))))
    bands = []
    for m, base in (("teacher", 0.9), ("student", 0.8), ("vanilla", 0.7)):
        bands.append({"model": m, "filter": "none", "cutoff": np.nan, "acc": base, "agreement": 1.0})
        for c in (0.125, 0.25, 0.375, 0.5, 0.75, 1.0):
            bands.append({"model": m, "filter": "low", "cutoff": c, "acc": base * c, "agreement": c})
            bands.append({"model": m, "filter": "high", "cutoff": c, "acc": base * (1 - c / 2), "agreement": 1 - c})
    figs["band_accuracy_curves"] = vf.band_accuracy_curves(pd.DataFrame(bands))
    figs["fourier_heatmaps"] = vf.fourier_heatmaps({m: FourierHeatmap(rng.uniform(0, 0.6, (8, 8)),
                                                                      rng.uniform(0, 2, (8, 8)), 10.0, 100, 0.05)
                                                    for m in ("teacher", "student", "vanilla")})
    figs["feature_spectra"] = vf.feature_spectra(pd.DataFrame(
        [{"model": m, "layer": la, "radius": r, "energy": rng.uniform()}
         for m, ls in (("teacher", layers_t[:3]), ("student", layers_s[:2])) for la in ls
         for r in np.linspace(0.05, 0.7, 8)]))
    figs["graph_energy_bars"] = vf.graph_energy_bars(pd.DataFrame({
        "model": ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"], "high_fraction": [0.1, 0.3, 0.25, 0.2],
        "high_fraction_std": [0.01, 0.02, 0.02, 0.03], "hf_similarity": [1.0, 0.4, 0.5, 0.6]}))
    scores = pd.DataFrame({k: rng.normal(size=5) for k in ("logme", "leep", "nce", "hscore")}, index=sources)
    figs["score_matrix"] = vt.score_matrix(scores)
    realised = dict(zip(sources, rng.uniform(0.5, 0.9, 5), strict=True))
    figs["ranking_scatter"] = vt.ranking_scatter(scores, realised, "logme")
    figs["kendall_bars"] = vt.kendall_bars({"logme": 0.5, "leep": -0.2, "nce": 0.1, "hscore": 0.3})
    figs["weight_bars"] = vt.weight_bars(dict(zip(sources, rng.uniform(0, 1, 5), strict=True)))
    figs["method_accuracy"] = vt.method_accuracy({"scratch": [0.8, 0.9], "nearest": [0.85, 0.88],
                                                  "weighted": [0.95, 0.97], "distill": [0.9, 0.92]})
    from kdlab.viz import adaptation, pair_gains
    from kdlab.viz import shift as vs

    targets = ["digits", "digits_invert", "digits_rot90", "digits_blur_noise", "digits_edge_invert", "digits_small",
               "digits_parity_rot45", "digits_0to4_invert"]
    bench = [{"target": t, "methods": {m: float(rng.uniform(0.5, 0.95)) for m in vs.METHOD_NAMES},
              "taus": {m: float(rng.uniform(-1, 1)) for m in ("logme", "hscore", "gbc", "transrate", "knn_accuracy",
                                                               "linear_probe", "leep", "nce")}} for t in targets]
    figs["benchmark_bars"] = vs.benchmark_bars(bench)
    figs["tau_heatmap"] = vs.tau_heatmap(bench)
    zoo7 = ["mnist", "mnist_rot90", "mnist_invert", "mnist_blur", "mnist_edge", "mnist_noise", "mnist_rot_invert"]
    gains = rng.normal(0, 8, (7, 7))
    figs["pair_gain_heatmap"] = pair_gains.pair_gain_heatmap(zoo7, gains.tolist())
    figs["complementary_heatmap"] = pair_gains.pair_gain_heatmap(zoo7, np.abs(gains).tolist(), kind="complementary")
    figs["adaptation_curves"] = adaptation.adaptation_curves(
        {t: {m: list(rng.uniform(0.2, 0.9, 9)) for m in ("GLC", "LPLD")} for t in
         ("digits", "mnist5k blur+noise", "mnist5k rotate 0.3", "digits open-set (0-4 known)")},
        {"digits open-set (0-4 known)": "H-score"})
    figs["grouped_bars"] = vs.grouped_bars(
        [{"held_out": d, "method": m, "accuracy": float(rng.uniform())} for d in zoo7[:6]
         for m in ("best expert (source val)", "best expert (oracle, by test)", "uniform mixture", "ERM student",
                   "aggregator (teacher)", "Meta-DMoE (no TTA)", "Meta-DMoE (TTA)")],
        "held_out", "method", "accuracy", "Meta-DMoE, leave one domain out")
    imgs, labels = rng.random((20, 1, 8, 8)).astype(np.float32), np.repeat(np.arange(10), 2)
    real = torch.from_numpy(rng.random((60, 1, 8, 8)).astype(np.float32))
    idx, dist = nearest_real(torch.from_numpy(imgs[:4]), real, k=3)
    figs["class_grid"] = vc.class_grid(imgs, labels, classes, flips=True)
    figs["snapshot_scrubber"] = vc.snapshot_scrubber([(i * 10, imgs, labels) for i in range(4)], classes)
    figs["neighbours_figure"] = vc.neighbours_figure(imgs[:4], real, idx, dist, rows=[f"class {i}" for i in range(4)])
    figs["mean_vs_synthetic"] = vc.mean_vs_synthetic(real.numpy(), np.repeat(np.arange(10), 6), imgs, labels, classes)
    figs["loss_curve"] = vc.loss_curve(np.arange(1, 101), np.linspace(3, 1, 100))
    figs["accuracy_bars"] = vc.accuracy_bars(pd.DataFrame({"mean": [0.8, 0.6, 0.7], "std": [0.01, 0.02, 0.01]},
                                                          index=["convnet", "mlp", "resnet8"]))
    from test_sweeps_page import saved_sweep

    from kdlab.viz import sweeps as vsw

    sweep = saved_sweep(24)
    figs.update({f"sweep_{k}": f for k, f in vsw.sweep_figures(sweep).items()})
    figs["sweep_parallel_kd"] = vsw.parallel_coordinates(sweep, method="kd")
    figs["sweep_advice"] = vsw.advice_bars(pd.DataFrame({
        "method": ["dkd", "kd", "dist", "nd"], "predicted": [0.91, 0.88, 0.85, np.nan], "trials": [12, 10, 1, 0],
        "best_seen": [0.92, 0.9, 0.85, np.nan], "best_params": [{"method.params.beta": 4.0}, {}, {}, {}],
        "sweeps": [["s1"], ["s1"], ["s1"], []], "note": ["", "", "", "never tried"]}))
    figs["sweep_best_spec"] = vsw.spec_card(sweep.best_spec())
    figs["sweep_trials_table"] = vsw.trials_table(sweep)
    return figs


def test_viz_figures_have_no_overlapping_texts(browser, shots):
    import plotly

    js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    figs = _figures()
    page = browser.new_page(viewport={"width": max(FIGURE_WIDTHS) + 40, "height": HEIGHT})
    problems = []
    try:
        page.set_content(f"<html><head><script>{js}</script></head><body style='margin:0'></body></html>")
        for name, fig in figs.items():
            spec = json.loads(fig.to_json())
            for width in FIGURE_WIDTHS:
                page.evaluate("""([spec, w]) => {
                    document.body.innerHTML = `<div id="g" style="width:${w}px"></div>`;
                    return Plotly.newPlot('g', spec.data, {...spec.layout, width: w}, {displaylogo: false});
                }""", [spec, width])
                report = page.evaluate(OVERLAPS_JS, TOLERANCE_PX)
                assert len(report) == 1 and report[0]["texts"], (name, width, report)
                if report[0]["pairs"]:
                    page.locator("#g").screenshot(path=str(shots / f"overlap-viz-{name}-{width}.png"))
                    problems += [f"{name} @ {width}px: {p}" for p in report[0]["pairs"]]
    finally:
        page.close()
    assert not problems, "overlapping figure texts:\n" + "\n".join(problems)
