"""``kdlab report RUN [RUN ...] -o report.html``: the CLI face of ``kdlab.report.build``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kdlab.report.runs import PREDICTIONS_FILE, RESULTS_FILE, RunData, load_run, run_from_store


def resolve(text: str, store: str | None = None) -> RunData:
    """A run named on the command line: a run folder / results.json path, else a run of the run store
    (id, unique id prefix or unique name)."""
    path = Path(text)
    if path.exists():
        return load_run(path)
    from kdlab.runs.store import open_store

    return run_from_store(open_store(store), text)


def cmd_report(args: argparse.Namespace) -> None:
    from kdlab.report.html import build, check_output, report_figures

    check_output(args.output)  # before any run is read or prediction computed
    runs: list[Any] = []
    for text in args.runs:
        run = resolve(text, args.store)
        if args.predict and run.predictions is None:
            folder = _folder(run)
            if folder is not None and (folder / "checkpoints").is_dir():
                from kdlab.report.predictions import compute_predictions

                run.predictions = compute_predictions(folder)
                print(f"computed test predictions of {run.name!r} -> {folder / PREDICTIONS_FILE}", flush=True)
            else:
                print(f"no checkpoints for {run.name!r}: per-class/confusion/calibration figures left out",
                      flush=True)
        runs.append(run)
    out = Path(args.output)
    html = build(runs, out, title=args.title)
    n = len(report_figures(runs))
    print(f"report of {len(runs)} run{'s' if len(runs) != 1 else ''}, {n} figures, "
          f"{len(html.encode()) / 2**20:.1f} MiB: {out}")


def _folder(run: RunData) -> Path | None:
    return run.folder if run.folder is not None and (run.folder / RESULTS_FILE).is_file() else None


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``kdlab`` parser."""
    p = sub.add_parser("report", help="write a self-contained HTML report (opens offline) of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folder (with results.json), or a run id / unique prefix / name in the run store")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--title", default="kdlab report", help="report title")
    p.add_argument("--predict", action="store_true",
                   help="compute test predictions from each run's checkpoint when the folder has none "
                        "(adds per-class, confusion and calibration figures)")
    p.add_argument("--store", help="run store folder for run ids (default: KDLAB_HOME)")
    p.set_defaults(fn=cmd_report)
