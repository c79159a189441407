"""Analysis jobs timed end to end from the dashboard's button to the drawn result, in headless Chromium.

Store: one finished KD run (digits, MLP teacher width 16 -> MLP student width 8, one epoch: the "small MLP run"
of the Representations symptom) and the transfer-rank source zoo built beforehand in a shared cache (a ranking
on the page ranks a zoo trained once per setting; its training is not the ranking). Each analysis is started
by clicking its real button on its page with the page's defaults, in a fresh browser session each repetition,
on the same server:

- CKA: Representations, Compute (digits val split, max_samples 500 -> the whole split, PCA embeddings);
- frequency: Frequency, Compute (page defaults);
- graph study: Frequency, Run GNN-to-MLP study (CSBM, 1000 nodes, 1024 features, 1 seed, 200 epochs);
- ranking: Shift, Rank sources (digits target, 10 labels per class, the 9 built-in sources);
- condensation start: Distilled images, Launch condensation (mnist5k, DM, IPC 1, 100 iterations) until the
  first snapshot's images are drawn; the run is then cancelled.

Split per job (from the store's timestamps and events): button -> run created, -> worker started (its
"worker pid" event: the process is up and has imported what it needs), -> job finished (for condensation: its
first snapshot written), -> result drawn in the page. ``--before PATH`` serves a second dashboard from another
checkout (``PYTHONPATH=PATH``, started in PATH; checked: that server's ``kdlab`` is PATH's) and interleaves both,
so one table holds before and after.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_analysis_jobs.py [--before /tmp/s25/base] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
from dashboard_helpers import ARGS, CHROMIUM, free_port, stop_server  # noqa: E402

from bench.common import markdown, save  # noqa: E402

SPEC = {"name": "small-mlp", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 200}},
        "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 8}}, "method": {"name": "kd"},
        "optim": {"epochs": 1, "batch_size": 64}}
TIMEOUT = 600.0


@dataclass
class Analysis:
    """One dashboard analysis: its tab, the job kind its button starts, the button and what shows the result."""

    name: str
    tab: str
    kind: str
    button: str  # a CSS selector of the button (or ``text=...``)
    css: str  # the JobPanel's CSS prefix (status ``kdlab-<css>-status``); "" for condensation
    figure: str  # the key of the figure that says the result is drawn


ANALYSES = [
    Analysis("CKA (Representations)", "Representations", "cka", ".kdlab-repr-compute button", "repr", "heatmap"),
    Analysis("frequency (Frequency)", "Frequency", "frequency", ".kdlab-freq-compute button", "freq", "bands"),
    Analysis("graph study (Frequency, GNN-to-MLP)", "Frequency", "graph_kd", ".kdlab-freq-graph-compute button",
             "freq-graph", "graph"),
    Analysis("ranking (Shift, source selection)", "Shift", "transfer_rank", ".kdlab-ss-compute button", "ss",
             "scores"),
    Analysis("condensation start (Distilled images)", "Distilled images", "condense",
             "button:has-text('Launch condensation')", "", "grid"),
]


def prepare(root: Path, zoo: bool) -> Path:
    """A store holding the finished small MLP run, and (``zoo``) the ranking's default source zoo in ``root/cache``."""
    from kdlab.jobs.transfer_rank import TransferRankJob, zoo_of
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.store import open_store

    home = root / "home"
    store = open_store(home)
    run_experiment(SPEC, run_dir=store.run_dir(store.create_run(SPEC, status="completed")))
    store.close()
    os.environ["KDLAB_CACHE"] = str(root / "cache")
    if zoo:
        zoo_of({k: p.default for k, p in TransferRankJob.params.items()}).build()
    return home


class Server:
    """A dashboard server (``kdlab serve``) on its own copy of the store, importing kdlab from ``tree``."""

    def __init__(self, label: str, tree: Path, home: Path):
        from kdlab.runs.store import open_store

        self.label, self.tree, self.home = label, tree, home
        env = {**os.environ, "KDLAB_HOME": str(home), "KDLAB_MAX_CONCURRENT": "2", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(tree)}
        where = subprocess.run([sys.executable, "-c", "import kdlab; print(kdlab.__file__)"], cwd=tree, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"{label}: the server would import kdlab from {where}, not from {tree}")
        self.kdlab = where
        port = free_port()
        self.log = open(home.parent / f"server-{label}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "kdlab.cli", "serve", "--port", str(port)], cwd=tree,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        self.store = open_store(home)

    def wait(self, timeout: float = 120.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label}: the server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.label}: the server did not answer within {timeout} s")


def until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


def text(page: Any, selector: str) -> str:
    """The text of the first element ``selector`` names, inside its shadow root (Panel panes draw there)."""
    try:
        return page.locator(selector).first.evaluate("el => (el.shadowRoot || el).textContent")
    except Exception:  # not there yet, or replaced while read
        return ""


def drawn(page: Any, selector: str) -> bool:
    """Whether the first plotly div under ``selector`` is visible with data."""
    plot = page.locator(f"{selector} .js-plotly-plot").first
    try:
        return plot.count() > 0 and plot.is_visible() and plot.evaluate("el => !!(el.data && el.data.length)")
    except Exception:  # replaced while read
        return False


def time_job(browser: Any, server: Server, a: Analysis) -> dict[str, float]:
    """Open a fresh page on ``a``'s tab, click its button, and time the new job until its result is drawn."""
    from kdlab.runs.background import cancel_run

    store = server.store
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    new = None
    try:
        page.goto(server.url)
        page.locator(".bk-tab", has_text=a.tab).first.click(timeout=120_000)
        button = page.locator(a.button).first
        button.wait_for(timeout=120_000)
        until(button.is_enabled, f"{a.name}: the button enabled", 120)
        old = {r.id for r in store.jobs(a.kind)}
        t0 = time.time()
        button.click()
        new = until(lambda: [r.id for r in store.jobs(a.kind) if r.id not in old], f"{a.name}: a new job")[0]
        if a.kind == "condense":  # the page follows the new run; its first snapshot's images drawn
            picker = page.locator(".kdlab-distilled-run select").first
            until(lambda: new in picker.evaluate("el => (el.options[el.selectedIndex] || {}).text || ''"),
                  "picker on the run")
            until(lambda: "per class" in text(page, ".kdlab-distilled-view"), f"{a.name}: status of images")
            t_said = time.time()
            until(lambda: drawn(page, ".kdlab-distilled-grid"), f"{a.name}: images drawn")
        else:
            until(lambda: f"(job {new})" in text(page, f".kdlab-{a.css}-status"), f"{a.name}: status done")
            t_said = time.time()
            until(lambda: drawn(page, f".kdlab-{a.css}-{a.figure}"), f"{a.name}: result drawn")
        t_drawn = time.time()
        if a.kind == "condense":  # its start is timed; the rest of it is not wanted
            snaps = sorted(store.run_dir(new).glob("snapshots/it*.npz"), key=lambda p: p.stat().st_mtime)
            t_end = snaps[0].stat().st_mtime if snaps else float("nan")
    finally:
        page.close()
        if new is not None and store.get_run(new).status in ("queued", "running"):
            cancel_run(store, new)  # a condensation run, or a job of a failed measurement
    rec = store.get_run(new)
    logs = store.logs(new)
    pid_events = logs[logs["message"].str.startswith("worker pid")]
    t_worker = pid_events["time"].iloc[0].timestamp() if len(pid_events) else float("nan")
    if a.kind != "condense":
        if rec.status != "completed":
            raise RuntimeError(f"{server.label} {a.name}: job {new} is {rec.status}: {rec.error}")
        t_end = rec.finished
    return {"created": rec.created - t0, "worker": t_worker - t0, "finished": t_end - t0,
            "said": t_said - t0, "drawn": t_drawn - t0, "job": new}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout measured as 'after' (default: this one)")
    ap.add_argument("--before", type=Path, default=None, help="another checkout measured side by side as 'before'")
    ap.add_argument("--only", nargs="*", default=None, help="analyses to time (their job kinds), default all")
    ap.add_argument("--name", default="bench_analysis_jobs")
    args = ap.parse_args()
    analyses = [a for a in ANALYSES if not args.only or a.kind in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="kdlab-bench-jobs-"))
    t_prep = time.perf_counter()
    home = prepare(tmp, any(a.kind == "transfer_rank" for a in analyses))
    print(f"prepared in {time.perf_counter() - t_prep:.0f} s", flush=True)
    trees = ([("before", args.before)] if args.before else []) + [("after", args.tree)]
    servers = []
    for label, tree in trees:
        shutil.copytree(home, tmp / f"home-{label}")
        servers.append(Server(label, tree, tmp / f"home-{label}"))
    from playwright.sync_api import sync_playwright

    times: dict[str, dict[str, list[dict[str, float]]]] = {s.label: {a.name: [] for a in analyses} for s in servers}
    loads = []
    try:
        for s in servers:
            s.wait()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            for rep in range(args.repeats):  # interleaved: a slow spell of the machine hits every column alike
                for a in analyses:
                    for s in servers:
                        t = time_job(browser, s, a)
                        times[s.label][a.name].append(t)
                        loads.append(os.getloadavg()[0])
                        print(f"{rep} {s.label:6s} {a.name}: {t['drawn']:.2f} s (job {t['job']})", flush=True)
            browser.close()
    finally:
        for s in servers:
            stop_server(s.proc)
    save(args.name, report(servers, analyses, times, args.repeats, loads),
         {"times": times, "trees": {s.label: s.kdlab for s in servers}, "loads": loads})
    shutil.rmtree(tmp, ignore_errors=True)  # kept when a measurement failed: the servers' logs are there


def report(servers: list[Server], analyses: list[Analysis], times: dict[str, Any], repeats: int,
           loads: list[float]) -> str:
    """The markdown: one row per analysis (median seconds, button -> drawn, per checkout), then the splits."""
    med = lambda label, name, key: statistics.median(t[key] for t in times[label][name])  # noqa: E731
    rows = []
    for a in analyses:
        row: dict[str, Any] = {"analysis": a.name}
        for s in servers:
            row[f"{s.label}: button -> drawn (s)"] = med(s.label, a.name, "drawn")
        if len(servers) == 2:
            before, after = (row[f"{s.label}: button -> drawn (s)"] for s in servers)
            row["speed-up"] = f"{before / after:.1f}x"
        rows.append(row)
    split = [{"analysis": a.name, "checkout": s.label,
              **{f"-> {k} (s)": med(s.label, a.name, k) for k in ("created", "worker", "finished", "said", "drawn")}}
             for a in analyses for s in servers]
    where = "; ".join(f"{s.label}: kdlab from {s.kdlab}" for s in servers)
    body = (f"Analysis jobs from the dashboard's button to the drawn result (headless Chromium, `kdlab serve`, "
            f"fresh page per job, median of {repeats}); {where}.\n\n{markdown(rows)}\n\n"
            f"Split (medians, seconds after the click): run created in the store, worker started (its first "
            f"event), job finished (condensation: first snapshot written), the page's status says so "
            f"(condensation: the images' caption), result drawn (the plotly figure holds data)."
            f"\n\n{markdown(split)}\n\n"
            f"Load average (1 min) while timing: median {statistics.median(loads):.2f}, max {max(loads):.2f} "
            f"on {os.cpu_count()} cores.")
    return body


if __name__ == "__main__":
    main()
