"""The ``kdlab`` command: thin wrappers over the Python API (every command is also a Python call)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from kdlab.errors import KdlabError


def _print_frame(df) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.max_colwidth", 70, "display.width", 160):
        print(df.to_string())


def cmd_demo(args: argparse.Namespace) -> None:
    from kdlab.demo import REPORT, run_demo
    from kdlab.runs.run_dir import new_run_dir
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
    from kdlab.runs.interrupt import CtrlC
    from kdlab.runs.preflight import preflight
    from kdlab.runs.run_dir import claimed_run_dir
    from kdlab.runs.spec import load_spec

    spec = load_spec(args.spec)
    preflight(spec)  # everything the spec needs is checked before a run folder exists
    if os.environ.get("RANK", "0") != "0":  # other ranks of `accelerate launch` / torchrun: rank 0 writes
        run_experiment(spec, run_dir=args.run_dir, resume=args.resume)
        return
    run_dir = Path(args.run_dir) if args.run_dir else None
    with claimed_run_dir(run_dir, spec.name, resume=args.resume, replace=args.replace) as out:
        print(f"training {spec.name!r}: {spec.method.name} {spec.teacher.name if spec.teacher else '-'} -> "
              f"{spec.student.name} on {spec.data.name} (run folder {out})", flush=True)
        try:
            with CtrlC() as ctrl_c:
                r = run_experiment(spec, run_dir=out, resume=args.resume, callbacks=[ctrl_c],
                                   teacher_callbacks=[ctrl_c])
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(args.spec, out)) from None
    print(f"teacher test acc {r.teacher.get('test/acc', float('nan')):.4f}  "
          f"student test acc {r.student['test/acc']:.4f}  "
          f"agreement {r.student.get('test/agreement', float('nan')):.4f}")
    print(f"results: {out / 'results.json'}")


def _resume_hint(spec: str, out: Path) -> str:
    if (out / "checkpoints" / "last.pt").is_file():
        return (f"the last checkpoint is kept in {out / 'checkpoints'}; continue with: "
                f"kdlab train {shlex.quote(spec)} --run-dir {shlex.quote(str(out))} --resume")
    return "no checkpoint was written yet"


class Interrupted(Exception):
    """Ctrl-C ended a command; the message says what was kept."""


def cmd_models(_args: argparse.Namespace) -> None:
    from kdlab.models import list_models

    _print_frame(list_models().set_index("name"))


def cmd_datasets(_args: argparse.Namespace) -> None:
    from kdlab.data import catalog

    _print_frame(catalog().set_index("name"))


def cmd_methods(args: argparse.Namespace) -> None:
    if args.text:  # language-model methods (the lm_distill job's ``method``)
        import pandas as pd

        from kdlab.jobs.lm_distill import _text_module

        table = pd.DataFrame(_text_module().LM_METHODS.table())
        _print_frame(table[["name", "doc", "params", "accepts_topk", "same_vocab"]].set_index("name"))
        return
    if args.diffusion:  # diffusion distillation methods (the diffusion job's ``method``)
        import pandas as pd

        from kdlab.jobs.diffusion import diffusion_module

        methods = diffusion_module().DIFFUSION_METHODS
        rows = [{**row, "sampling": cls.kind, "data_free": cls.data_free, "needs_labels": cls.needs_labels,
                 "paper": cls.cite} for row in methods.table() for cls in [methods.get(row["name"])]]
        _print_frame(pd.DataFrame(rows).set_index("name"))
        return
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

    serve(port=args.port, address=args.address, show=args.show, store=args.store, basic_auth=args.basic_auth,
          oauth_provider=args.oauth_provider, oauth_key=args.oauth_key, oauth_redirect_uri=args.oauth_redirect_uri,
          oauth_extra_params=args.oauth_extra_params, allow_users=args.allow_user or (),
          allow_origins=args.allow_origin or (), ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)


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
    t.add_argument("--replace", action="store_true",
                   help="overwrite the run already in --run-dir (its checkpoints and results are deleted)")
    t.set_defaults(fn=cmd_train)
    sub.add_parser("models", help="list the model zoo").set_defaults(fn=cmd_models)
    sub.add_parser("datasets", help="list the datasets").set_defaults(fn=cmd_datasets)
    me = sub.add_parser("methods", help="list the distillation methods (--text: language models, --diffusion: "
                                        "diffusion models)")
    me.add_argument("--text", action="store_true", help="the language-model methods of the lm_distill job")
    me.add_argument("--diffusion", action="store_true", help="the diffusion methods of the diffusion job")
    me.set_defaults(fn=cmd_methods)
    j = sub.add_parser("jobs", help="list the job kinds (or one kind's parameters); `kdlab launch` runs any of them")
    j.add_argument("kind", nargs="?", help="show this kind's declared parameters")
    j.set_defaults(fn=cmd_jobs)
    sv = sub.add_parser("serve", help="serve the Panel dashboard (localhost by default; a login elsewhere)")
    sv.add_argument("--port", type=int, default=5006)
    sv.add_argument("--address", default="127.0.0.1", help="interface to bind (default: localhost only)")
    sv.add_argument("--store", help="run store folder (default: KDLAB_HOME)")
    sv.add_argument("--show", action="store_true", help="open a browser")
    sv.add_argument("--basic-auth", metavar="FILE", help="require a login: a file of 'user:password' lines (or "
                    "Panel's JSON {user: password}); 'user:password' itself works but shows in `ps`; env "
                    "KDLAB_BASIC_AUTH. Any address but loopback needs this or --oauth-provider")
    sv.add_argument("--oauth-provider", metavar="NAME", help="require a login through Panel's OAuth provider NAME "
                    "(github, google, azure, okta, generic, ...; env KDLAB_OAUTH_PROVIDER) with env "
                    "KDLAB_OAUTH_KEY and KDLAB_OAUTH_SECRET, optional KDLAB_OAUTH_ENCRYPTION_KEY")
    sv.add_argument("--oauth-key", metavar="ID", help="the OAuth client id (default: env KDLAB_OAUTH_KEY)")
    sv.add_argument("--oauth-redirect-uri", metavar="URL", help="the OAuth redirect URI if not this server's "
                    "/login (env KDLAB_OAUTH_REDIRECT_URI)")
    sv.add_argument("--oauth-extra-params", metavar="JSON", help="provider extras, e.g. '{\"tenant\": \"...\"}' "
                    "(env KDLAB_OAUTH_EXTRA_PARAMS)")
    sv.add_argument("--allow-user", action="append", metavar="NAME", help="only this logged-in user gets the "
                    "dashboard (repeatable; env KDLAB_ALLOWED_USERS=a,b)")
    sv.add_argument("--allow-origin", action="append", metavar="HOST[:PORT]", help="another host name browsers "
                    "use to reach the server (a proxy, a DNS name; repeatable)")
    sv.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate")
    sv.add_argument("--ssl-keyfile", metavar="FILE", help="the certificate's private key")
    sv.set_defaults(fn=cmd_serve)
    from kdlab.runs.commands import add_run_commands

    add_run_commands(sub)  # launch, runs, status, cancel, resume, logs
    from kdlab.report.command import add_report_command

    add_report_command(sub)  # report
    from kdlab.sweeps.command import add_sweep_command

    add_sweep_command(sub)  # sweep, sweep best, sweep advise
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; a kdlab error, Ctrl-C or a closed output pipe end it with one line on stderr and exit
    code 2, 130 (128 + SIGINT) or 141 (128 + SIGPIPE)."""
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
        sys.stdout.flush()
    except KdlabError as e:
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"kdlab: interrupted{f'; {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to write at exit
        print("kdlab: output closed early (broken pipe)", file=sys.stderr)
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
