"""Scheduling: the queue of the run store and the liveness of its workers, in one place.

There is no daemon, and reading the store never starts work. The queue moves in three places only: ``launch``
(and ``resume``), a worker's exit (the worker itself, or the reaper thread of the process that started it), and an
explicit ``refresh(store)`` (the dashboard's tick, ``RunHandle.wait``). ``refresh`` marks runs whose worker died
without writing as ``interrupted`` (or ``cancelled`` when a cancel was asked for) and claims queued runs into free
slots (claims are atomic transactions, so two processes never start the same run or exceed the limit);
``reconcile`` only notices dead workers (``RunHandle.status``, ``kdlab runs``/``status``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback

from kdlab.runs.executors import checkpoint_note, get_executor, log_tail
from kdlab.runs.store import RunRecord, Store


def mark_gone(store: Store, run: RunRecord, reason: str, returncode: int | None = None) -> bool:
    """Record that ``run``'s worker ended without writing a result (guarded: only if still that attempt)."""
    if run.cancel_requested:
        status = "cancelled"
    elif returncode is not None and returncode > 0:
        status = "failed"
    else:
        status = "interrupted"
    error = f"{reason}; {checkpoint_note(run)}"
    tail = log_tail(run)
    tb = f"last lines of {run.run_dir}/worker.log:\n{tail}" if tail else None
    return store.set_status(run.id, status, error=error, traceback=tb, expect=("running",), attempt=run.attempt)


def reconcile(store: Store) -> None:
    """Mark running runs whose worker is gone (see ``Executor.alive``)."""
    for run in store.records("running"):
        try:
            ex = get_executor(run.executor)
        except KeyError:
            continue  # an executor this process does not know (a plugin not imported here)
        alive, reason = ex.alive(store, run)
        if alive is False:
            mark_gone(store, run, reason)


def start_queued(store: Store) -> list[str]:
    """Start queued runs while their executor has free slots; returns the ids started."""
    started = []
    names = {r["executor"] for r in store._read("SELECT DISTINCT executor FROM runs WHERE status = 'queued'")}
    for name in sorted(names):
        try:
            ex = get_executor(name)
        except KeyError:
            continue
        limit = ex.max_concurrent(store)
        while (run := store.claim_next(name, limit)) is not None:
            try:
                proc = ex.start(store, run)
                started.append(run.id)
                if proc is not None:  # a worker process of ours: record its end the moment it exits
                    threading.Thread(target=_reap, args=(proc, store.root, run.id, run.attempt), daemon=True,
                                     name=f"kdlab-reap-{run.id}").start()
            except Exception as e:
                store.set_status(run.id, "failed", error=f"could not start the worker: {type(e).__name__}: {e}",
                                 traceback=traceback.format_exc(), expect=("running",))
    return started


def refresh(store: Store) -> None:
    """Reconcile dead workers, then fill free slots from the queue."""
    reconcile(store)
    start_queued(store)


def _reap(proc: subprocess.Popen, root: os.PathLike[str], run_id: str, attempt: int) -> None:
    """Wait for a worker this process started; record its end if it died without writing, start queued runs."""
    code = proc.wait()
    try:
        store = Store(root)
        run = store.get_run(run_id)
        if run.status == "running" and run.attempt == attempt and run.pid == proc.pid:
            if code < 0:
                reason = f"worker process {proc.pid} was killed by {signal.Signals(-code).name}"
            else:
                reason = f"worker process {proc.pid} exited with code {code} without recording a result"
            mark_gone(store, run, reason, returncode=code)
        start_queued(store)
        store.close()
    except Exception as e:  # never let a reaper thread's error reach the user's process
        print(f"kdlab: could not record the end of run {run_id}: {e}", file=sys.stderr)
