"""No text of a plotly figure overlaps another, on every dashboard page at 1280, 1500 and 1920 px.

The dashboard is served on a store with two completed runs that logged their metrics (so the runs, compare and
run detail pages draw curves, and the analysis pages offer the runs). For every page (``kdlab.ui.pages.pages()``,
the tabs) at each width, the bounding boxes of the SVG ``text`` elements of every visible ``.js-plotly-plot``
are read: figure title, subplot titles and other annotations, axis titles, tick labels, legend entries,
colour-bar labels. Two of them of the same figure that overlap by more than ``TOLERANCE_PX`` in both
directions fail the test, naming the page, width, figure and the two texts (a full-page screenshot is saved in
``test-artifacts/screenshots``). Hidden or empty texts, hidden figures (pages hide a figure until it has a
result) and the hover layer are ignored. Tick labels of one axis are included: a correct plot never draws
them on top of each other.
"""
from __future__ import annotations

import importlib.util
import time

import pytest
from dashboard_helpers import TINY_SPEC, start_server, stop_server

pytestmark = [pytest.mark.slow]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(300))

WIDTHS = (1280, 1500, 1920)
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
    return `${t.getAttribute('class') || (g && g.getAttribute('class')) || 'text'} "${t.textContent.trim().slice(0, 60)}"`;
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
        least = Math.min(least, Math.min(Math.max(...pa), Math.max(...pb)) - Math.max(Math.min(...pa), Math.min(...pb)));
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
