"""Executors: how a run's worker is started, watched and stopped.

An executor is registered by name (``launch(spec, executor=name)``). The scheduler (``kdlab.runs.background``)
claims queued runs into free slots and calls ``start``; status reads call ``alive`` to notice workers that
died without writing; ``cancel`` calls ``stop``. Whatever runs the work executes
``kdlab.runs.worker.execute(run_id, store_root)`` (or ``python -m kdlab.runs.worker RUN_ID``), which writes
everything else (status, metrics, logs, result) to the store.

- ``local``: a detached ``python -m kdlab.runs.worker`` process per run (own session and process group,
  output in ``<run folder>/worker.log``), at most ``store.max_concurrent`` at once. With
  ``resources.processes = N > 1`` the worker runs as N DDP ranks under ``python -m kdlab.runs.ddp``
  (gloo on the CPU, one GPU per rank otherwise; all ranks in the run's process group, so cancel/kill
  reach every one of them). A multi-process run takes one slot of ``max_concurrent``.
- ``ray`` (``pip install kdlab[ray]``, ``kdlab.runs.ray_executor``): the worker body as a Ray task.
- Other executors (Ray, multi-process DDP launchers) subclass ``Executor``: ``check`` rejects specs they cannot
  run, ``max_concurrent`` says how many of their runs may run at once (None: they queue themselves),
  ``start`` submits, ``alive`` reports liveness (the default reads the worker's heartbeat), ``stop`` cancels
  (the default sets the run's cancel flag, which the worker's heartbeat thread turns into SIGTERM).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kdlab.errors import ConfigError, unknown
from kdlab.runs.forkserver import ForkServer
from kdlab.runs.store import RunRecord, Store, hostname

if TYPE_CHECKING:
    from kdlab.runs.spec import ExperimentSpec

HEARTBEAT_S = 2.0  # how often a worker stamps its heartbeat (and checks for a cancel request)
STALE_S = 30.0  # a worker whose heartbeat is older than this (and cannot be checked by pid) is gone
START_GRACE_S = 60.0  # a claimed run whose worker never recorded a pid/heartbeat after this is gone
LOG_NAME = "worker.log"
# glibc malloc settings of local workers: keep freed memory in the heap for the next tensor of that size instead
# of returning it to the OS and page-faulting fresh pages in for every large activation (costly in VMs). DM at
# IPC 10 runs ~1.4x faster on a 2-core VM (bench_condense). Other allocators ignore them; the user's values win.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}

EXECUTORS: dict[str, Callable[[], Executor]] = {}


def register_executor(name: str) -> Callable[[type[Executor]], type[Executor]]:
    """Class decorator: make ``launch(spec, executor=name)`` use this ``Executor`` subclass."""

    def wrap(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        EXECUTORS[name] = cls
        return cls

    return wrap


_instances: dict[str, Executor] = {}


_LAZY = {"ray": "kdlab.runs.ray_executor"}  # registered on first use (their imports are heavy or optional)


def get_executor(name: str) -> Executor:
    """The executor registered as ``name``; unknown names list the known ones."""
    if name not in EXECUTORS and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    if name not in EXECUTORS:
        raise unknown("executor", name, {**EXECUTORS, **_LAZY}, where="executor")
    if name not in _instances:
        _instances[name] = EXECUTORS[name]()
    return _instances[name]


def log_tail(run: RunRecord, lines: int = 30) -> str:
    """The last ``lines`` lines of the run's worker output (empty when there is none)."""
    if run.run_dir is None:
        return ""
    path = run.run_dir / LOG_NAME
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16_384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def checkpoint_note(run: RunRecord) -> str:
    if run.run_dir is not None and (run.run_dir / "checkpoints" / "last.pt").is_file():
        return "checkpoints/last.pt is kept; resume() continues from it"
    return "no checkpoint was written yet; resume() starts over"


class Executor:
    """Base executor (see the module doc). Subclasses set ``name`` through ``register_executor``."""

    name = "base"

    def check(self, spec: ExperimentSpec) -> None:
        """Raise ConfigError when this executor cannot run ``spec`` (called by ``launch``, before queueing)."""

    def max_concurrent(self, store: Store) -> int | None:
        """How many of this executor's runs may be ``running`` at once (None: no limit here)."""
        return store.max_concurrent

    def start(self, store: Store, run: RunRecord) -> subprocess.Popen | None:
        """Start the worker of ``run`` (already marked ``running``); must return quickly. Returns the worker's
        process when this process started one (the scheduler then records its end), else None."""
        raise NotImplementedError

    def alive(self, store: Store, run: RunRecord) -> tuple[bool | None, str]:
        """``(False, reason)`` when the run's worker is certainly gone; ``(True, "")`` when it is alive;
        ``(None, "")`` when it cannot tell. The default reads the heartbeat."""
        now = time.time()
        last = run.heartbeat or run.started or run.created
        if now - last > (STALE_S if run.heartbeat else START_GRACE_S):
            what = f"last heartbeat {now - last:.0f} s ago" if run.heartbeat else "it never reported in"
            return False, f"the worker of run {run.id} on {run.host or 'an unknown host'} stopped ({what})"
        return True, ""

    def stop(self, store: Store, run: RunRecord, force: bool = False) -> None:
        """Ask the worker to stop (the cancel flag is already set); ``force`` kills it."""


@register_executor("local")
class LocalExecutor(Executor):
    """Each run in a detached ``python -m kdlab.runs.worker`` process on this machine (or, once
    ``use_fork_server`` was called in this process, forked from a fork server that has the imports done)."""

    def __init__(self) -> None:
        self.fork_server: ForkServer | None = None

    def use_fork_server(self, preload: Sequence[str] = ()) -> None:
        """Start this process's single-process workers through a fork server (``kdlab.runs.forkserver``; it also
        imports ``preload``): a run starts in ~0.1 s instead of ~3 s. A sweep's process does this for its trials,
        the served dashboard for the jobs its buttons start."""
        if self.fork_server is None or not self.fork_server.alive():
            self.fork_server = ForkServer(preload, {**ALLOCATOR_ENV, **os.environ})  # malloc settings at its start

    def check(self, spec: ExperimentSpec) -> None:
        n = spec.resources.processes
        if n > 1 and getattr(spec, "kind", "train") != "train":
            raise ConfigError(f"resources.processes: only training runs use several processes; a "
                              f"{spec.kind} job runs in one (got {n})")
        if n > 1 and spec.device != "cpu":
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if spec.device.startswith("cuda") and gpus == 0:
                raise ConfigError("device: 'cuda' was asked for but no GPU is visible; use 'auto' or 'cpu'")
            if gpus and n > gpus:
                raise ConfigError(f"resources.processes: {n} processes need {n} GPUs (one per rank) but "
                                  f"{gpus} are visible; use at most {gpus}, or device: cpu")

    def command(self, store: Store, run: RunRecord) -> list[str]:
        """The worker's command line; N > 1 processes: N ranks under ``python -m kdlab.runs.ddp``."""
        worker = [sys.executable, "-m", "kdlab.runs.worker", run.id, "--store", str(store.root)]
        n = int(run.spec.get("resources", {}).get("processes", 1))
        return [sys.executable, "-m", "kdlab.runs.ddp", str(n), "--", *worker] if n > 1 else worker

    def environment(self, run: RunRecord) -> dict[str, str]:
        env = {**os.environ, **{str(k): str(v) for k, v in run.options.get("env", {}).items()},
               "PYTHONUNBUFFERED": "1"}
        threads = str(max(1, round(float(run.spec.get("resources", {}).get("cpus", 1.0)))))
        for var, value in {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **ALLOCATOR_ENV}.items():
            env.setdefault(var, value)
        return env

    def start(self, store: Store, run: RunRecord) -> subprocess.Popen | None:
        assert run.run_dir is not None
        run.run_dir.mkdir(parents=True, exist_ok=True)
        cwd = run.options.get("cwd")
        cwd = cwd if cwd and os.path.isdir(cwd) else None
        forked = (self.fork_server is not None and self.fork_server.alive()
                  and int(run.spec.get("resources", {}).get("processes", 1)) == 1)
        with open(run.run_dir / LOG_NAME, "ab") as log:
            how = "forked by the fork server" if forked else " ".join(self.command(store, run))
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {run.attempt}: {how}\n".encode())
            log.flush()
        if forked:  # no Popen here: the server reaps it, and the store notices its end (reconcile)
            pid = self.fork_server.start_worker(run.id, str(store.root), run.run_dir / LOG_NAME, cwd,
                                                self.environment(run))
            store.update_run(run.id, pid=pid, pid_start=_create_time(pid), host=hostname())
            return None
        with open(run.run_dir / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(self.command(store, run), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    cwd=cwd, env=self.environment(run))
        store.update_run(run.id, pid=proc.pid, pid_start=_create_time(proc.pid), host=hostname())
        return proc

    def alive(self, store: Store, run: RunRecord) -> tuple[bool | None, str]:
        if run.host and run.host != hostname():
            return super().alive(store, run)
        if run.pid is None:
            if time.time() - (run.started or run.created) > START_GRACE_S:
                return False, f"the worker of run {run.id} was never started"
            return True, ""
        import psutil

        gone = (f"worker process {run.pid} on {run.host or hostname()} is gone without recording a result "
                "(killed by a signal such as SIGKILL or the out-of-memory killer, or the machine restarted)")
        try:
            proc = psutil.Process(run.pid)
            created, state = proc.create_time(), proc.status()
        except psutil.NoSuchProcess:
            return False, gone
        except psutil.AccessDenied:
            return None, ""
        if run.pid_start is not None and abs(created - run.pid_start) > 1.0:
            return False, gone + f"; pid {run.pid} now belongs to another process"
        if state == psutil.STATUS_ZOMBIE:
            return False, gone
        return True, ""

    def stop(self, store: Store, run: RunRecord, force: bool = False) -> None:
        if run.pid is None or (run.host and run.host != hostname()):
            return  # the worker's heartbeat sees the cancel flag
        alive, _ = self.alive(store, run)
        if alive is False:
            return
        try:  # the worker leads its own process group (start_new_session): stop everything it started
            os.killpg(run.pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise ConfigError(f"cannot signal worker process {run.pid} of run {run.id}: {e}") from e


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
