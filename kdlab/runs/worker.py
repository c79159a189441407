"""The background worker: ``python -m kdlab.runs.worker RUN_ID [--store ROOT]``.

Runs one stored run (any job kind: ``kdlab.runs.job``) to its end and records it: ``running`` (pid, host,
device, heartbeat), the job's progress and metrics, then ``completed`` (with a summary), ``failed`` (error and
traceback) or ``cancelled`` (SIGTERM, or the run's cancel flag seen by the heartbeat; the last checkpoint stays
intact because checkpoints are written to a temporary file and renamed). A worker killed outright (SIGKILL)
writes nothing: its launcher's reaper, or ``refresh``/``reconcile`` (``kdlab.runs.scheduler``), notice that its
pid is gone and mark the run ``interrupted``.
``resume`` continues a resumable kind from what its folder holds (a training run from ``checkpoints/last.pt``);
other kinds start over.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from kdlab.distill.trainer import pick_device
from kdlab.runs.executors import HEARTBEAT_S, checkpoint_note, log_tail
from kdlab.runs.job import JobContext, get_job, kind_of
from kdlab.runs.scheduler import start_queued
from kdlab.runs.spec import load_job
from kdlab.runs.store import Store, hostname, open_store
from kdlab.runs.tracking.mirror import start_live_mirror

_state = {"raised": False, "signals": False}


class Cancelled(BaseException):
    """Raised in the worker's main thread by SIGTERM (a BaseException: ``except Exception`` won't swallow it)."""


def _on_sigterm(signum: int, _frame: Any) -> None:
    if _state["raised"]:
        return
    _state["raised"] = True
    raise Cancelled(f"cancelled by {signal.Signals(signum).name}")


def _quiet(signum: int, _frame: Any) -> None:  # while recording the end: a second SIGTERM must not cut it
    pass


class Heartbeat(threading.Thread):
    """Stamps the run's heartbeat every ``interval`` s and turns a cancel request into SIGTERM (to the whole
    process group for a multi-process run started by ``kdlab.runs.ddp``) or, for a run executed inside
    another program (a Ray task), into ``Cancelled`` raised in the thread that runs it (``target``)."""

    def __init__(self, store: Store, run_id: str, interval: float, target: int | None = None):
        super().__init__(daemon=True, name=f"kdlab-heartbeat-{run_id}")
        self.store, self.run_id, self.interval = store, run_id, interval
        self.halt = threading.Event()
        self.target = target  # thread ident to interrupt (when not signalling)
        self.lock = threading.Lock()
        self.armed = target is not None

    def disarm(self) -> None:
        """No more interruptions (the run is recording its end)."""
        with self.lock:
            self.armed = False

    def _interrupt(self) -> None:
        import ctypes

        with self.lock:
            if self.armed and self.target is not None:
                self.armed = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.py_object(Cancelled))

    def run(self) -> None:
        signalled = False
        while not self.halt.wait(self.interval):
            try:
                cancel = self.store.heartbeat(self.run_id)
            except Exception as e:  # the store is briefly unavailable: try again next beat
                print(f"kdlab worker: heartbeat failed: {e}", file=sys.stderr, flush=True)
                continue
            if cancel and not signalled and _state["signals"]:
                signalled = True
                if os.environ.get("KDLAB_DDP_LAUNCHER") == "1":
                    os.killpg(os.getpgrp(), signal.SIGTERM)  # the launcher and every rank
                else:
                    os.kill(os.getpid(), signal.SIGTERM)
            elif cancel and not signalled and self.target is not None:
                signalled = True
                self._interrupt()
        self.store.close()

    def stop(self) -> None:
        self.halt.set()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return f"{device} ({torch.cuda.get_device_name(idx)})"
    return device


def _set_threads(cpus: float) -> None:
    import torch

    n = max(1, round(cpus))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # already fixed by earlier parallel work


def execute(run_id: str, store_root: str | os.PathLike[str] | None = None, own_process: bool = True,
            store: Any = None, run_dir: Path | None = None, interruptible: bool = False) -> str:
    """Run the stored run ``run_id`` to its end in this process and record the outcome; returns its status.

    ``own_process``: this process exists for this run, so SIGTERM cancels it and torch uses
    ``resources.cpus`` threads (pass False to run it inside another program, e.g. a test).
    ``store``: an object with the ``Store`` methods the worker uses (the Ray executor passes a proxy that
    forwards them to an actor next to the real store) instead of opening ``store_root``; ``run_dir``: where
    checkpoints and results go (default: the store's run folder). ``interruptible`` (with
    ``own_process=False``): a cancel request raises ``Cancelled`` in the calling thread.

    Executors call this (the local one through ``python -m kdlab.runs.worker``). Only rank 0 of a
    multi-process launch (``RANK`` unset or 0) writes progress to the store; another rank that fails
    records ``failed`` with its traceback, and rank 0 stopped by the launcher because another rank ended
    records ``failed`` (not ``cancelled``) unless a cancel was asked for.
    """
    if own_process:
        signal.signal(signal.SIGTERM, _on_sigterm)
        _state["signals"] = True

    store = store if store is not None else open_store(store_root)
    run = store.get_run(run_id)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    is_main = rank == 0
    if run.status != "running":
        print(f"kdlab worker: run {run_id} is {run.status}, not running; nothing to do", flush=True)
        return run.status
    beat: Heartbeat | None = None
    mirror = None  # the live MLflow/TensorBoard mirror of a spec with ``tracking:`` (rank 0 only)
    run_dir = Path(run_dir) if run_dir is not None else store.run_dir(run_id)
    status = "failed"
    # ray.cancel raises KeyboardInterrupt in a task: a cancel too when the run is interruptible
    stoppers: tuple[type[BaseException], ...] = (Cancelled, KeyboardInterrupt) if interruptible else (Cancelled,)
    try:

        spec = load_job(run.spec)
        job = get_job(kind_of(run.spec))
        if own_process:
            _set_threads(spec.resources.cpus)
        device = pick_device(spec.device)
        if is_main:
            fields: dict[str, Any] = {"host": hostname(), "device": _device_name(device), "heartbeat": time.time()}
            if run.pid is None:
                import psutil

                fields.update(pid=os.getpid(), pid_start=psutil.Process().create_time())
            store.update_run(run_id, **fields)
            store.log(run_id, f"worker pid {run.pid or os.getpid()} on {hostname()} ({fields['device']}), "
                              f"attempt {run.attempt}")
            target = threading.get_ident() if (interruptible and not own_process) else None
            beat = Heartbeat(store, run_id, HEARTBEAT_S, target)
            beat.start()
            mirror = start_live_mirror(store, run_id, spec, run_dir)  # a resumed run's truncation is noticed
            if store.heartbeat(run_id) and (own_process or interruptible):  # cancelled before we got here
                raise Cancelled("cancelled before the worker started training")
        if run.resume and is_main and not job.resumable:
            store.truncate_metrics(run_id, -1)
            store.log(run_id, f"{job.name} jobs do not resume: starting over")
        ctx = JobContext(spec, run_dir, device, store if is_main else None, run_id, resume=run.resume,
                         options=dict(run.options))
        print(f"kdlab worker: run {run_id} ({job.name} job {spec.name}) on {device}, resume={run.resume}", flush=True)
        summary = job.run(ctx)
        if own_process:
            signal.signal(signal.SIGTERM, _quiet)
        if beat is not None:
            beat.disarm()
        status = "completed"
        if is_main:
            shown = [f"{k}={v:.4g}" for k, v in summary.items() if isinstance(v, (int, float))][:6]
            store.set_status(run_id, "completed", expect=("running", "interrupted"), summary=summary,
                             message="completed" + (": " + ", ".join(shown) if shown else ""))
    except stoppers as e:
        if own_process:
            signal.signal(signal.SIGTERM, _quiet)
        if beat is not None:
            beat.disarm()
        status = "cancelled"
        e = e if str(e) else Cancelled("cancelled (the heartbeat saw the cancel request)")
        for tmp in (run_dir / "checkpoints").glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a checkpoint cut mid-write; the renamed ones are intact
        if is_main and world > 1 and not _cancel_asked(store, run_id):
            status = "failed"  # the launcher stopped this rank because another one ended
            rec = dataclasses.replace(store.get_run(run_id), run_dir=run_dir)
            tail = log_tail(rec, 60)
            store.set_status(run_id, "failed", expect=("running", "interrupted"),
                             error=f"another rank of this {world}-process run ended, so rank 0 was stopped "
                                   f"({e}); {checkpoint_note(rec)}",
                             traceback=f"last lines of {run_dir}/worker.log:\n{tail}" if tail else None)
        elif is_main:
            rec = dataclasses.replace(store.get_run(run_id), run_dir=run_dir)  # where this worker writes
            store.set_status(run_id, "cancelled", error=f"{e}; {checkpoint_note(rec)}",
                             expect=("running", "interrupted"))
        print(f"kdlab worker: {e}", flush=True)
    except BaseException as e:
        if own_process:
            signal.signal(signal.SIGTERM, _quiet)
        status = "failed"
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        if is_main or world > 1:  # any rank's failure ends the run (the first one recorded wins)
            where = f" (rank {rank} of {world})" if world > 1 else ""
            store.set_status(run_id, "failed", error=f"{type(e).__name__}{where}: {e}", traceback=tb,
                             expect=("running", "interrupted"))
    finally:
        if beat is not None:
            beat.stop()
        if mirror is not None:
            mirror.finish()  # the last rows, summary, files and the status just recorded; never raises
    if is_main and isinstance(store, Store):
        try:
            start_queued(store)  # hand the freed slot to the next queued run
        except Exception as e:
            print(f"kdlab worker: could not start queued runs: {e}", file=sys.stderr, flush=True)
    return status


def _cancel_asked(store: Any, run_id: str) -> bool:
    try:
        return bool(store.get_run(run_id).cancel_requested)
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdlab.runs.worker", description=__doc__.splitlines()[0])
    p.add_argument("run_id")
    p.add_argument("--store", default=None, help="store folder (default: KDLAB_HOME)")
    args = p.parse_args(argv)
    try:
        status = execute(args.run_id, args.store)
    except Cancelled as e:  # SIGTERM before the run was even loaded
        print(f"kdlab worker: {e}", flush=True)
        return 143
    except Exception as e:  # the store itself is unusable: nothing can be recorded; say so in worker.log
        traceback.print_exc()
        print(f"kdlab worker: could not run {args.run_id}: {e}", file=sys.stderr, flush=True)
        return 3
    return {"completed": 0, "cancelled": 0, "failed": 1}.get(status, 0)


if __name__ == "__main__":
    sys.exit(main())
