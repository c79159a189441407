"""``kdlab sweep``: the CLI face of ``kdlab.sweep`` (launch), ``SweepResult.best_spec`` (``best``) and
``kdlab.sweeps.advice.advise`` (``advise``).

- ``kdlab sweep SPEC --space SPACE --trials N [--sampler tpe] [--pruner median] [--executor local|ray] [--wait]``
- ``kdlab sweep best SWEEP``: the winning spec as YAML (a comment line gives its trial and value)
- ``kdlab sweep advise SPEC``: methods ranked for SPEC from the store's earlier sweeps
"""
from __future__ import annotations

import argparse
import sys

import yaml

from kdlab.errors import ConfigError

USAGE = ("kdlab sweep SPEC --space SPACE [--trials N] ...  |  kdlab sweep best SWEEP  |  "
         "kdlab sweep advise SPEC")


def _store(args: argparse.Namespace):
    from kdlab.runs.store import open_store

    return open_store(args.store)


def cmd_sweep(args: argparse.Namespace) -> None:
    words = list(args.words)
    if words[0] in ("best", "advise"):
        if len(words) != 2:
            raise ConfigError(f"usage: kdlab sweep {words[0]} {'SWEEP' if words[0] == 'best' else 'SPEC'}")
        (cmd_best if words[0] == "best" else cmd_advise)(args, words[1])
        return
    if len(words) != 1:
        raise ConfigError(f"usage: {USAGE}")
    if not args.space:
        raise ConfigError("--space: give the search space file (YAML/JSON), e.g. `optim.lr: {low: 0.01, high: 0.2}`")
    from kdlab.sweeps import sweep

    options = {k: v for k, v in {"sampler": args.sampler, "pruner": args.pruner, "executor": args.executor,
                                 "parallel": args.parallel, "seed": args.seed, "metric": args.metric,
                                 "direction": args.direction}.items()
               if v is not None}
    h = sweep(words[0], args.space, trials=args.trials, store=args.store, name=args.name, **options)
    print(f"{h.id}  {h.status}  (folder {h.run_dir}); follow it with `kdlab logs {h.id} --follow` or the "
          "dashboard's Sweeps page", flush=True)
    if args.wait:
        status = h.wait()
        print(status)
        result = h.result()
        if result is not None and result.best is not None:
            b = result.best
            print(f"best: trial {b.number} {result.metric} {b.value:.4f}  (`kdlab sweep best {h.id}` prints its spec)")


def cmd_best(args: argparse.Namespace, sweep_id: str) -> None:
    from kdlab.runs.job import kind_of
    from kdlab.sweeps.result import read_sweep

    store = _store(args)
    run = store.get_run(store.resolve(sweep_id))
    if kind_of(run.spec) != "sweep":
        raise ConfigError(f"run {run.id} is a {kind_of(run.spec)} run, not a sweep; `kdlab runs` lists the sweeps "
                          "(kind sweep)")
    result = read_sweep(run.run_dir)
    if result is None or result.best is None:
        raise ConfigError(f"sweep {run.id} has no finished trial yet ({run.status})")
    b = result.best
    sys.stdout.write(f"# best of sweep {run.id}: trial {b.number} (run {b.run_id}), {result.metric} {b.value:.4f}\n")
    sys.stdout.write(yaml.safe_dump(result.best_spec(), sort_keys=False))


def cmd_advise(args: argparse.Namespace, spec_path: str) -> None:
    import pandas as pd

    from kdlab.runs.spec import load_spec
    from kdlab.sweeps.advice import advise

    table = advise(_store(args), load_spec(spec_path).to_dict())
    if table.empty:
        print("no finished sweep trials in the store yet: run a sweep first (kdlab sweep SPEC --space SPACE)")
        return
    shown = table[["method", "predicted", "standing", "trials", "best_seen", "note"]]
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print("try these first:\n" + shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    """Add ``kdlab sweep`` to the ``kdlab`` parser."""
    p = sub.add_parser("sweep", help="search method / parameters / optimiser of a spec (Optuna or Ray Tune); "
                       "`sweep best SWEEP` prints the winning spec, `sweep advise SPEC` ranks methods from history",
                       usage=USAGE)
    p.add_argument("words", nargs="+", metavar="SPEC | best SWEEP | advise SPEC")
    p.add_argument("--space", help="the search space file (YAML/JSON): spec field -> choices or {low, high, log, step}")
    p.add_argument("--trials", type=int, default=20, help="how many trials (default 20)")
    p.add_argument("--sampler", choices=("tpe", "random", "grid"), help="default tpe")
    p.add_argument("--pruner", choices=("median", "halving", "none"), help="default median")
    p.add_argument("--executor", choices=("local", "ray"), help="local: Optuna (default); ray: Ray Tune with ASHA")
    p.add_argument("--parallel", type=int, help="trials at once (default: the store's slots)")
    p.add_argument("--metric", choices=("val/acc", "val/loss", "val/agreement"), help="objective (default val/acc)")
    p.add_argument("--direction", choices=("maximize", "minimize"), help="default maximize")
    p.add_argument("--seed", type=int, help="seed of the sampler")
    p.add_argument("--name", help="the sweep's run name")
    p.add_argument("--wait", action="store_true", help="wait for the sweep to end and print the best trial")
    p.add_argument("--store", help="run store folder (default: KDLAB_HOME)")
    p.set_defaults(fn=cmd_sweep)
