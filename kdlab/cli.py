"""The ``kdlab`` command: thin wrappers over the Python API (every command is also a Python call)."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from kdlab.errors import KdlabError


def new_run_dir(name: str, parent: Path | None = None) -> Path:
    """A fresh folder ``<parent>/<timestamp>-<name>-<hex>`` (default parent: ``<KDLAB_HOME>/runs``)."""
    from kdlab.paths import home

    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    parent = parent if parent is not None else home() / "runs"
    path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"
    path.mkdir(parents=True)
    return path


def _print_frame(df) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.max_colwidth", 70, "display.width", 160):
        print(df.to_string())


def cmd_demo(args: argparse.Namespace) -> None:
    from kdlab.demo import REPORT, run_demo
    from kdlab.runs.store import open_store

    store = open_store(args.store)
    out = new_run_dir("demo", store.root / "reports")
    print(f"kdlab demo: ConvNet teacher -> MLP student on mnist5k, with and without KD, then CKA and frequency "
          f"analyses of the KD student; every step is a job in the run store {store.root}", flush=True)
    t0 = time.perf_counter()
    table = run_demo(out, seed=args.seed, epochs=args.epochs, teacher_epochs=args.teacher_epochs, store=store)
    print()
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\nresults: {out / 'demo.json'}\nreport:  {out / REPORT} (one self-contained file)")
    print(f"{time.perf_counter() - t0:.0f} s; `kdlab runs` lists the demo's runs, `make serve` shows them")


def cmd_train(args: argparse.Namespace) -> None:
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.spec import load_spec

    spec = load_spec(args.spec)
    if os.environ.get("RANK", "0") != "0":  # other ranks of `accelerate launch` / torchrun: rank 0 writes
        run_experiment(spec, run_dir=args.run_dir, resume=args.resume)
        return
    out = Path(args.run_dir) if args.run_dir else new_run_dir(spec.name)
    print(f"training {spec.name!r}: {spec.method.name} {spec.teacher.name if spec.teacher else '-'} -> "
          f"{spec.student.name} on {spec.data.name} (run folder {out})", flush=True)
    r = run_experiment(spec, run_dir=out, resume=args.resume)
    print(f"teacher test acc {r.teacher.get('test/acc', float('nan')):.4f}  "
          f"student test acc {r.student['test/acc']:.4f}  "
          f"agreement {r.student.get('test/agreement', float('nan')):.4f}")
    print(f"results: {out / 'results.json'}")


def cmd_models(_args: argparse.Namespace) -> None:
    from kdlab.models import list_models

    _print_frame(list_models().set_index("name"))


def cmd_datasets(_args: argparse.Namespace) -> None:
    from kdlab.data import catalog

    _print_frame(catalog().set_index("name"))


def cmd_methods(_args: argparse.Namespace) -> None:
    from kdlab.distill import list_methods

    _print_frame(list_methods().set_index("name"))


def cmd_jobs(args: argparse.Namespace) -> None:
    from kdlab.runs.job import get_job, list_jobs

    if args.kind:
        job = get_job(args.kind)
        print(f"{job.name}: {(type(job).__doc__ or '').strip()}")
        rows = [{"param": k, **p.describe()} for k, p in job.params.items()]
        if rows:
            import pandas as pd

            _print_frame(pd.DataFrame(rows).set_index("param")[["type", "default", "low", "high", "choices", "doc"]])
        else:
            print("(its spec is an experiment spec: see the README)")
        return
    import pandas as pd

    _print_frame(pd.DataFrame(list_jobs()).set_index("name"))


def cmd_serve(args: argparse.Namespace) -> None:
    from kdlab.ui.dashboard import serve

    serve(port=args.port, address=args.address, show=args.show, store=args.store)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdlab", description="Knowledge-distillation lab for PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="teacher -> student with and without KD on built-in mnist5k")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, default=8, help="student epochs")
    d.add_argument("--teacher-epochs", type=int, default=6)
    d.add_argument("--store", help="run store folder (default: KDLAB_HOME)")
    d.set_defaults(fn=cmd_demo)
    t = sub.add_parser("train", help="run an experiment spec (YAML/JSON) in the foreground")
    t.add_argument("spec", help="path of the spec file")
    t.add_argument("--run-dir", help="folder for checkpoints and results (default: a new run folder)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    t.set_defaults(fn=cmd_train)
    sub.add_parser("models", help="list the model zoo").set_defaults(fn=cmd_models)
    sub.add_parser("datasets", help="list the datasets").set_defaults(fn=cmd_datasets)
    sub.add_parser("methods", help="list the distillation methods").set_defaults(fn=cmd_methods)
    j = sub.add_parser("jobs", help="list the job kinds (or one kind's parameters); `kdlab launch` runs any of them")
    j.add_argument("kind", nargs="?", help="show this kind's declared parameters")
    j.set_defaults(fn=cmd_jobs)
    sv = sub.add_parser("serve", help="serve the Panel dashboard (localhost by default)")
    sv.add_argument("--port", type=int, default=5006)
    sv.add_argument("--address", default="127.0.0.1", help="interface to bind (default: localhost only)")
    sv.add_argument("--store", help="run store folder (default: KDLAB_HOME)")
    sv.add_argument("--show", action="store_true", help="open a browser")
    sv.set_defaults(fn=cmd_serve)
    from kdlab.runs.commands import add_run_commands

    add_run_commands(sub)  # launch, runs, status, cancel, resume, logs
    from kdlab.report.command import add_report_command

    add_report_command(sub)  # report
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except KdlabError as e:
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
