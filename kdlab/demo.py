"""The main job (``make demo`` / ``kdlab demo``): a ConvNet teacher, an MLP student with and without KD, and what
the KD student took from its teacher (a CKA grid, frequency band curves), ending in one HTML report.

Every step is a job in the run store (``KDLAB_HOME``), done by background workers and followed from here: both
training runs (they share one cached teacher), then a ``cka`` and a ``frequency`` job on the KD run. On a
terminal each job shows a progress bar per phase; elsewhere one line per step (an epoch, an analysis stage).
Afterwards ``kdlab runs`` lists them and ``make serve`` shows them.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from kdlab.runs.background import RunHandle, launch, submit
from kdlab.runs.scheduler import refresh
from kdlab.runs.spec import ExperimentSpec, load_spec
from kdlab.runs.store import TERMINAL, Store, open_store

REPORT = "report.html"


def demo_specs(seed: int = 0, epochs: int = 8, teacher_epochs: int = 6,
               data: str = "mnist5k") -> dict[str, ExperimentSpec]:
    """The two student runs of the demo (vanilla and KD) sharing one cached ConvNet teacher."""
    base: dict[str, Any] = {
        "seed": seed, "data": {"name": data}, "device": "auto",
        "teacher": {"name": "convnet", "params": {"width": 32, "norm": "batchnorm"},
                    "optim": {"epochs": teacher_epochs, "lr": 0.05}},
        "student": {"name": "mlp", "params": {"width": 256, "depth": 2}},
        "optim": {"name": "sgd", "lr": 0.05, "epochs": epochs, "batch_size": 128},
    }
    return {
        "vanilla": load_spec({**base, "name": "demo-vanilla", "method": {"name": "vanilla"}}),
        "kd": load_spec({**base, "name": "demo-kd", "method": {"name": "kd", "params": {"temperature": 4.0}}}),
    }


def follow(handles: Mapping[str, RunHandle], stream: TextIO | None = None, poll_s: float = 0.5) -> dict[str, str]:
    """Show the jobs' progress until all have ended; returns their final statuses. On a terminal: a tqdm bar per
    job and phase; otherwise one line each time a job's progress message changes."""
    stream = stream or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    bars: dict[str, Any] = {}
    said: dict[str, str] = {}
    phase: dict[str, str] = {}
    status: dict[str, str] = {}
    while True:
        for label, h in handles.items():
            if label in status:
                continue
            rec = h.store.get_run(h.id)
            if rec.status in TERMINAL:
                status[label] = rec.status
                if label in bars:
                    bars.pop(label).close()
                print(f"[{label}] {rec.status}" + (f": {rec.error}" if rec.error else ""), file=stream, flush=True)
                continue
            p = h.store.progress(h.id)
            msg = p.message if rec.status == "running" and p.total else rec.status
            if tty:
                _bar(bars, phase, label, msg, p, stream)
            elif msg != said.get(label):
                print(f"[{label}] {msg}", file=stream, flush=True)
            said[label] = msg
        if len(status) == len(handles):
            return status
        refresh(handles[next(iter(handles))].store)  # a worker killed outright shows as interrupted
        time.sleep(poll_s)


def _bar(bars: dict[str, Any], phase: dict[str, str], label: str, msg: str, p: Any, stream: TextIO) -> None:
    """One tqdm bar per job and phase (the text before ':' in the message, e.g. 'teacher', 'student')."""
    from tqdm import tqdm

    if not p.total:
        return
    name = msg.split(":", 1)[0] if ":" in msg else msg
    if phase.get(label) != name and label in bars:
        bars.pop(label).close()
    phase[label] = name
    if label not in bars:
        bars[label] = tqdm(total=p.total, desc=f"{label} {name}"[:40], file=stream, leave=True,
                           ncols=min(120, shutil.get_terminal_size().columns), nrows=40,  # a 0x0 pty draws too
                           bar_format="{desc:<26} {percentage:3.0f}%|{bar:20}|{postfix}")
    bar = bars[label]
    bar.total, bar.n = p.total, p.done
    bar.set_postfix_str(msg.split(":", 1)[-1].strip()[:50], refresh=False)
    bar.refresh()


def summary_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model (the teacher, then each student run): val/test accuracy, teacher agreement, time."""
    any_run = next(iter(results.values()))
    t = any_run["teacher"]
    rows = [{"model": f"teacher ({any_run['spec']['teacher']['name']})", "val_acc": t.get("val/acc"),
             "test_acc": t.get("test/acc"), "agreement": 1.0, "time_s": t.get("train_time_s")}]
    for name, r in results.items():
        s = r["student"]
        rows.append({"model": f"student ({r['spec']['student']['name']}, {name})",
                     "val_acc": s["last"].get("val/acc"), "test_acc": s["test/acc"],
                     "agreement": s.get("test/agreement"), "time_s": s["train_time_s"]})
    return pd.DataFrame(rows).set_index("model")


def run_demo(out_dir: Path, seed: int = 0, epochs: int = 8, teacher_epochs: int = 6, store: Store | None = None,
             stream: TextIO | None = None, analysis: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run the demo's jobs in ``store`` (default ``KDLAB_HOME``), following them; write ``demo.json`` (table,
    results and run ids) and ``report.html`` (both runs, with the KD run's CKA grid and band curves) to
    ``out_dir``. ``analysis`` overrides the cka/frequency job parameters (tests make them small)."""
    from kdlab.report import build, run_from_store

    store = store or open_store()
    extra = {"cka": {"max_samples": 500}, "frequency": {"n_images": 500, "heatmap_images": 20}}
    for kind, params in (analysis or {}).items():
        extra[kind] = {**extra[kind], **params}
    runs = {name: launch(spec, store=store, tags=["demo"]) for name, spec in
            demo_specs(seed, epochs, teacher_epochs).items()}
    _check(follow(runs, stream), runs)
    kd, vanilla = runs["kd"], runs["vanilla"]
    jobs = {"cka": submit("cka", store, run=kd.id, tags=["demo"], **extra["cka"]),
            "frequency": submit("frequency", store, run=kd.id, compare=[vanilla.id], tags=["demo"],
                                **extra["frequency"])}
    _check(follow(jobs, stream), jobs)
    results = {name: h.result() for name, h in runs.items()}
    table = summary_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"table": json.loads(table.reset_index().to_json(orient="records")),
               "runs": {k: {"id": runs[k].id, **r} for k, r in results.items()},
               "analyses": {k: {"id": h.id, "summary": store.get_run(h.id).summary} for k, h in jobs.items()}}
    (out_dir / "demo.json").write_text(json.dumps(payload, indent=2))
    build([run_from_store(store, h.id) for h in (kd, vanilla)], out_dir / REPORT,
          title="kdlab demo: KD vs vanilla student, and what the KD student took from its teacher")
    return table


def _check(statuses: Mapping[str, str], handles: Mapping[str, RunHandle]) -> None:
    bad = {k: s for k, s in statuses.items() if s != "completed"}
    if bad:
        from kdlab.errors import KdlabError

        raise KdlabError("demo: " + "; ".join(f"{k} ({handles[k].id}) {s}: {handles[k].error}"
                                              for k, s in bad.items()))
