"""The run-store commands of the ``kdlab`` CLI: launch, runs, status, cancel, resume, logs, export.

Each is a thin wrapper over the Python API (``kdlab.launch``, ``kdlab.open_store``, ``RunHandle``);
``kdlab.cli`` adds them with ``add_run_commands``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from kdlab.runs.background import RunHandle
from kdlab.runs.scheduler import reconcile


def _store(args: argparse.Namespace):
    from kdlab.runs.store import open_store

    return open_store(args.store)


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _print_frame(df: Any) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.max_colwidth", 60, "display.width", 200):
        print(df.to_string(index=False) if len(df) else "(none)")


def cmd_launch(args: argparse.Namespace) -> None:
    from kdlab.runs.background import launch

    h = launch(args.spec, store=args.store, name=args.name, tags=args.tag or (), log_every=args.log_every)
    print(f"{h.id}  {h.status}  (folder {h.run_dir})", flush=True)
    if args.wait:
        print(h.wait())


def cmd_runs(args: argparse.Namespace) -> None:
    store = _store(args)
    reconcile(store)  # dead workers show as interrupted; nothing is started by listing
    df = store.list_runs(status=args.status or None)
    if len(df):
        import pandas as pd

        def progress(r: Any) -> str:  # epochs of a training run, the share done of any other job
            if r["kind"] == "train":
                return f"{int(r['epoch'])}/{int(r['epochs'])}"
            return f"{100 * store.progress(r['id']).fraction:.0f}%"

        df = df.assign(created=df["created"].dt.tz_convert(None).dt.strftime("%m-%d %H:%M:%S"),
                       duration_s=pd.to_numeric(df["duration_s"]).round(1), progress=df.apply(progress, axis=1))
    cols = ["id", "name", "kind", "status", "progress", "method", "teacher", "student", "data", "test_acc", "created",
            "duration_s", "device", "error"]
    _print_frame(df[cols] if len(df) else df)


def cmd_status(args: argparse.Namespace) -> None:
    store = _store(args)
    reconcile(store)
    r = store.get_run(store.resolve(args.run))
    print(f"run       {r.id}  ({r.name})\nstatus    {r.status}\nexecutor  {r.executor}  host {r.host or '-'}  "
          f"pid {r.pid or '-'}  device {r.device or '-'}  attempt {r.attempt}")
    print(f"created   {_when(r.created)}  started {_when(r.started)}  finished {_when(r.finished)}")
    print(f"folder    {r.run_dir}")
    if r.tags:
        print(f"tags      {', '.join(r.tags)}")
    hist = store.history(r.id)
    if len(hist):
        keep = [c for c in ("train/loss", "train/acc", "val/loss", "val/acc", "val/agreement", "lr") if c in hist]
        print(f"\nepochs ({len(hist)}/{r.spec.get('optim', {}).get('epochs', '?')}):")
        print(hist[keep].tail(args.epochs).to_string(float_format=lambda v: f"{v:.4g}"))
    if r.summary:
        print("\nresult:  " + "  ".join(f"{k}={v:.4g}" for k, v in r.summary.items() if isinstance(v, float)))
    if r.error:
        print(f"\nerror: {r.error}")
    if r.traceback and args.traceback:
        print(r.traceback)


def cmd_cancel(args: argparse.Namespace) -> None:
    store = _store(args)
    h = RunHandle(store, store.resolve(args.run))
    print(f"{h.id}  {h.cancel(timeout=args.timeout)}")


def cmd_resume(args: argparse.Namespace) -> None:
    store = _store(args)
    h = RunHandle(store, store.resolve(args.run)).resume()
    print(f"{h.id}  {h.status}")
    if args.wait:
        print(h.wait())


def cmd_logs(args: argparse.Namespace) -> None:
    store = _store(args)
    h = RunHandle(store, store.resolve(args.run))
    if args.output:
        print(h.output(), end="")
        return
    seq = 0
    while True:
        df = h.logs(since_seq=seq)
        for row in df.itertuples():
            stamp = row.time.tz_convert(None).strftime("%H:%M:%S")
            print(f"{stamp} {row.level:<7} {row.message}", flush=True)
            seq = int(row.seq)
        if not args.follow or (h.done and h.logs(since_seq=seq).empty):
            return
        time.sleep(0.5)


def cmd_export(args: argparse.Namespace) -> None:
    from kdlab.runs.tracking import export_runs

    for e in export_runs(_store(args), args.runs, to=args.to, uri=args.uri, experiment=args.experiment,
                         checkpoints=args.checkpoints):
        what = "up to date, skipped" if e.skipped else f"{e.rows} metric rows"
        print(f"{e.run_id}  {e.to}  {e.location}  ({what})", flush=True)


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """Add the run-store subcommands to the ``kdlab`` parser."""

    def parser(name: str, help: str, run: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if run:
            p.add_argument("run", help="run id (or a unique id prefix, or a unique run name)")
        p.add_argument("--store", help="run store folder (default: KDLAB_HOME)")
        return p

    p = parser("launch", "run an experiment spec in the background (returns at once)", run=False)
    p.add_argument("spec", help="path of the spec file (YAML/JSON)")
    p.add_argument("--name", help="run name (default: the spec's name)")
    p.add_argument("--tag", action="append", help="tag the run (repeatable)")
    p.add_argument("--log-every", type=int, default=10, help="record per-step metrics every N steps")
    p.add_argument("--wait", action="store_true", help="wait for the run to end")
    p.set_defaults(fn=cmd_launch)
    p = parser("runs", "list the runs in the store", run=False)
    p.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    p.set_defaults(fn=cmd_runs)
    p = parser("status", "show one run: status, progress, result or error")
    p.add_argument("--epochs", type=int, default=5, help="show the last N epochs")
    p.add_argument("--traceback", action="store_true", help="print the full traceback of a failed run")
    p.set_defaults(fn=cmd_status)
    p = parser("cancel", "stop a queued or running run (the last checkpoint is kept)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a stuck worker is killed")
    p.set_defaults(fn=cmd_cancel)
    p = parser("resume", "continue a failed, cancelled or interrupted run from its last checkpoint")
    p.add_argument("--wait", action="store_true", help="wait for the run to end")
    p.set_defaults(fn=cmd_resume)
    p = parser("logs", "print a run's log lines")
    p.add_argument("--output", action="store_true", help="print the worker's stdout/stderr instead")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p.set_defaults(fn=cmd_logs)
    p = parser("export", "mirror runs to MLflow or TensorBoard (params, metrics, summary, files, status)", run=False)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or unique id prefixes, or unique run names)")
    p.add_argument("--to", required=True, choices=("mlflow", "tensorboard"), help="where to mirror the runs")
    p.add_argument("--uri", help="MLflow tracking URI (folder, file:, sqlite:///, http(s)://; default "
                   "MLFLOW_TRACKING_URI, else sqlite:///<store>/mlflow.db) or TensorBoard folder (default "
                   "<store>/tensorboard)")
    p.add_argument("--experiment", default="kdlab", help="MLflow experiment name (default: kdlab)")
    p.add_argument("--checkpoints", action="store_true", help="also upload checkpoints/*.pt (MLflow)")
    p.set_defaults(fn=cmd_export)
