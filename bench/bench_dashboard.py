"""Dashboard first-page render time and live-curve latency, in headless Chromium.

Store: 200 runs, the newest with 20,000 metric rows (the live curves show it on load). Baseline: a bare Panel
page holding one plotly figure, served by the same server and loaded in the same browser session. Latency:
this process writes a metric row of a running run (as a worker would) and times until the page shows it.

    .venv/bin/python bench/bench_dashboard.py [--loads 9]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import markdown, save  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SPEC = {"name": "bench", "device": "cpu", "data": {"name": "mnist5k", "params": {"n_train": 300}},
        "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1}},
        "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": "kd"}, "optim": {"epochs": 3}}
BARE = '''
import panel as pn
import plotly.graph_objects as go
pn.extension("plotly")
x = list(range(1000))
pn.pane.Plotly(go.Figure([go.Scatter(x=x, y=[v % 37 for v in x])]), height=420).servable()
'''


def fill_store(root: Path) -> str:
    from kdlab.runs.store import open_store

    store = open_store(root)
    for i in range(199):
        rid = store.create_run({**SPEC, "name": f"run-{i:03d}"}, status="completed", tags=["bench"])
        store.add_metrics(rid, [(e, float(e), "epoch", "val/acc", 0.5 + e / 10, None) for e in range(1, 4)])
    big = store.create_run({**SPEC, "name": "big-run"}, status="completed")
    rows = [(s, s / 5, "step", k, 1.0 / s, None) for s in range(1, 5001) for k in ("train/loss", "train/kd", "lr")]
    rows += [(e * 5, float(e), "epoch", k, 0.5 + 0.0004 * e, None) for e in range(1, 1001)
             for k in ("train/loss", "train/acc", "val/loss", "val/acc", "lr")]
    store.add_metrics(big, rows)
    assert len(store.metrics(big)) == 20_000
    return big


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=9)
    ap.add_argument("--latency-points", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kdlab-bench-dash-"))
    home = tmp / "home"
    big = fill_store(home)
    (tmp / "bare.py").write_text(BARE)
    port = 5900 + os.getpid() % 90
    env = {**os.environ, "KDLAB_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(ROOT / "dashboards" / "app.py"),
                               str(tmp / "bare.py"), "--port", str(port), "--address", "127.0.0.1",
                               "--allow-websocket-origin", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{port}"
    results, rows = {}, []
    try:
        wait_http(f"{base}/bare")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            plot_ready = "el => el.data && el.data.length > 0"

            def load(path: str, selector: str, then: str | None = None) -> tuple[float, float | None]:
                """Seconds to a drawn plot, and (``then``) until that element is visible too."""
                t0 = time.perf_counter()
                page.goto(base + path)
                page.locator(selector).first.wait_for(timeout=120_000)
                page.locator(selector).first.wait_for(state="visible")
                while not page.locator(selector).first.evaluate(plot_ready):
                    page.wait_for_timeout(10)
                t_plot = time.perf_counter() - t0
                if then is None:
                    return t_plot, None
                page.locator(then).first.wait_for(state="visible", timeout=120_000)
                return t_plot, time.perf_counter() - t0

            def row(name: str, times: list[float]) -> dict:
                return {"page": name, "median load to plot (s)": statistics.median(times), "min (s)": min(times),
                        "max (s)": max(times), "loads": len(times)}

            pages = [("bare Panel page, one plotly figure", "/bare", ".js-plotly-plot", None),
                     ("kdlab dashboard (200 runs, 20k-row run)", "/app", ".kdlab-live-plot .js-plotly-plot",
                      ".kdlab-runs-table .tabulator-row")]
            for _, path, sel, then in pages:
                load(path, sel, then)  # warm-up (imports, first session)
            both: dict[str, list] = {name: [] for name, *_ in pages}
            for _ in range(args.loads):  # interleaved: a slow spell of the machine hits both pages alike
                for name, path, sel, then in pages:
                    both[name].append(load(path, sel, then))
            for name, *_, then in pages:
                results[name] = [t for t, _ in both[name]]
                rows.append(row(name, results[name]))
                if then is not None:
                    results[name + ": runs table shown"] = full = [t for _, t in both[name]]
                    rows.append(row("... and its runs table shown (joins after the first view)", full))
            # live latency: a running run written by this process (as a worker)
            from kdlab.runs.store import open_store

            store = open_store(home)
            live = store.create_run({**SPEC, "name": "live-run"}, status="running")
            store.add_metrics(live, [(1, 1.0, "epoch", "val/acc", 0.5, None)])
            page.goto(base + "/app")
            page.locator(".kdlab-points").first.wait_for(timeout=120_000)
            lat = []
            for i in range(2, args.latency_points + 2):
                before = page.locator(".kdlab-points").first.inner_text()
                page.wait_for_timeout(300 + 97 * i % 700)  # desynchronise from the 1 s poll
                t0 = time.perf_counter()
                store.add_metrics(live, [(i, float(i), "epoch", "val/acc", 0.5 + i / 100, None)])
                while page.locator(".kdlab-points").first.inner_text() == before:
                    page.wait_for_timeout(10)
                lat.append(time.perf_counter() - t0)
            results["latency"] = lat
            rows.append(row("live curve: worker writes a point -> shown (1 s poll)", lat))
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    bare, app = (statistics.median(results[k]) for k in list(results)[:2])
    text = (f"Dashboard render (store: 200 runs, newest {big} with 20,000 metric rows) vs a bare Panel page with "
            f"one plotly figure, same server, same headless Chromium session; time from navigation to a drawn "
            f"plotly figure (the dashboard's: the newest run's live curves).\n\n{markdown(rows)}\n\n"
            f"Ratio dashboard / bare page (medians): **{app / bare:.2f}x** (target <= 1.5x: "
            f"{'met' if app <= 1.5 * bare else 'NOT met'}); load average at the end {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores.")
    save("bench_dashboard", text, results)


if __name__ == "__main__":
    main()
