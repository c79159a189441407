"""The ``ray`` executor (``pip install kdlab[ray]``): each run's worker body as one Ray task.

``launch(spec, executor="ray")`` connects to Ray (``RAY_ADDRESS`` / an already initialised Ray, else a
local cluster is started) and submits ``kdlab.runs.worker.execute`` as a task that asks for
``resources.cpus`` CPUs and ``resources.gpus`` GPUs. Ray queues tasks on its own resources, so this
executor has no slot limit of its own.

The task never opens the store's SQLite file. Everything the worker writes (status, heartbeat, metric
batches from ``StoreCallback``, log lines, the final result) goes through ``StoreProxy`` to one
``StoreSink`` actor per store, pinned to the driver's node (where the store lives), which applies it to the
store. So Ray runs show in ``list_runs``, ``RunHandle`` and the dashboard exactly like local ones.

Files: on the driver's node the task writes checkpoints, ``results.json`` and its output (``worker.log``)
into the run folder directly; on another node it works in a scratch folder and sends the files to the sink
when it ends (a resumed run first fetches ``checkpoints/last.pt`` from it).

Liveness and cancel: while the launching process (the Ray driver, which owns the task) lives, a monitor
thread stamps the heartbeat of its submitted tasks until they end, cancels tasks still waiting for resources
when a cancel is asked for, and records a task that ended without recording a result (worker crash,
``ray.cancel(force=True)``) as failed/cancelled with Ray's error. A running task sees a cancel request at its
next heartbeat (every 2 s) and stops as ``cancelled``, keeping its last checkpoint. Other processes judge
Ray runs by the heartbeat; if the driver exits, its tasks end with it (Ray's ownership) and their runs show
as ``interrupted`` once the heartbeat is stale.

Limits: one process per run (``resources.processes > 1`` is refused: use the ``local`` executor for DDP);
a Ray Client driver (``ray://``) is not a cluster node, so the store must be reachable from the head node.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError
from kdlab.runs.executors import HEARTBEAT_S, LOG_NAME, Executor, register_executor
from kdlab.runs.job import CONTROLLER_KINDS
from kdlab.runs.store import RunRecord, Store

_PROXIED = ("get_run", "update_run", "log", "heartbeat", "set_status", "add_metrics", "truncate_metrics",
            "metrics", "run_dir", "create_run", "tag_run")


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("executor 'ray' needs Ray: pip install 'kdlab[ray]'") from e
    return ray


def connect(address: str | None = None, **init: Any) -> None:
    """Connect to Ray once per process: ``address``, else ``RAY_ADDRESS``, else start a local cluster."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    init.setdefault("include_dashboard", False)
    init.setdefault("log_to_driver", False)
    ray.init(address=address, **init)


class StoreSink:
    """The actor (one per store and driver) that applies the records Ray tasks send to the store."""

    def __init__(self, root: str):
        self.store = Store(root)

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        if method not in _PROXIED:
            raise ValueError(f"StoreSink: {method!r} is not a store method tasks may call")
        return getattr(self.store, method)(*args, **kwargs)

    def put_file(self, run_id: str, rel: str, data: bytes) -> None:
        base = self.store.run_dir(run_id).resolve()
        path = (base / rel).resolve()
        if base not in path.parents:
            raise ValueError(f"StoreSink: {rel!r} is outside the run folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get_file(self, run_id: str, rel: str) -> bytes | None:
        path = self.store.run_dir(run_id) / rel
        return path.read_bytes() if path.is_file() else None

    def ping(self) -> str:
        import socket

        return socket.gethostname()


class StoreProxy:
    """What ``execute`` sees as its store inside a Ray task: each call is one (batched) actor call."""

    def __init__(self, sink: Any, root: str):
        self.sink, self.root = sink, Path(root)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        return ray.get(self.sink.call.remote(method, args, kwargs))

    def __getattr__(self, name: str) -> Any:
        if name in _PROXIED:
            return lambda *a, **k: self._call(name, *a, **k)
        raise AttributeError(name)

    def close(self) -> None:
        pass


def _task(run_id: str, sink: Any, root: str, driver_node: str, env: dict[str, str]) -> str:
    """The Ray task: ``execute`` with the proxy store, writing files locally or into a scratch folder."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # KDLAB_* of the launching process (teacher cache, ...), for this task only
    try:
        return run_task(run_id, sink, root, driver_node)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_task(run_id: str, sink: Any, root: str, driver_node: str) -> str:
    """Execute run ``run_id`` in this Ray process through the store actor ``sink``; returns its status (the body
    of every Ray run: a task of this executor, or a Ray Tune trial of a sweep)."""
    import ray

    from kdlab.runs.worker import _set_threads, execute

    proxy = StoreProxy(sink, root)
    run = proxy.get_run(run_id)
    _set_threads(float(run.spec.get("resources", {}).get("cpus", 1.0)))
    local = (ray.get_runtime_context().get_node_id() == driver_node and Path(root).is_dir()
             and os.environ.get("KDLAB_RAY_SCRATCH") != "1")  # 1: as on another node (tests)
    scratch = None if local else tempfile.mkdtemp(prefix=f"kdlab-{run_id}-")
    run_dir = Path(proxy.run_dir(run_id)) if local else Path(scratch)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not local and run.resume:
        data = ray.get(sink.get_file.remote(run_id, "checkpoints/last.pt"))
        if data is not None:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "last.pt").write_bytes(data)
    try:
        with open(run_dir / LOG_NAME, "a", buffering=1) as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {run.attempt}: Ray task on node "
                  f"{ray.get_runtime_context().get_node_id()[:12]}", flush=True)
            return execute(run_id, store=proxy, run_dir=run_dir, own_process=False, interruptible=True)
    finally:
        if scratch is not None:
            for path in sorted(Path(scratch).rglob("*")):
                if path.is_file() and not path.name.endswith(".tmp"):
                    ray.get(sink.put_file.remote(run_id, str(path.relative_to(scratch)), path.read_bytes()))


_remote_task: Any = None


@register_executor("ray")
class RayExecutor(Executor):
    """Runs go to Ray as tasks; see the module doc."""

    def __init__(self) -> None:
        self._sinks: dict[str, Any] = {}
        self._refs: dict[str, tuple[Any, int, str]] = {}  # run id -> (ObjectRef, attempt, store root)
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def check(self, spec: Any) -> None:
        _ray()
        if getattr(spec, "kind", None) in CONTROLLER_KINDS:
            raise ConfigError(f"executor: a {spec.kind} job runs in a local process that launches and follows "
                              "its runs; to run a sweep's trials on Ray, give the sweep `executor: ray` "
                              "(kdlab.sweep(..., executor='ray'))")
        if spec.resources.processes > 1:
            raise ConfigError(f"resources.processes: the 'ray' executor runs one process per run, got "
                              f"{spec.resources.processes}; use the 'local' executor for multi-process DDP")

    def max_concurrent(self, store: Store) -> int | None:
        return None  # Ray queues tasks on the cluster's resources

    def sink(self, root: str) -> Any:
        """The actor that applies Ray workers' store calls to the store at ``root`` (one per store)."""
        ray = _ray()
        if root not in self._sinks:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            node = ray.get_runtime_context().get_node_id()
            actor = ray.remote(StoreSink).options(
                num_cpus=0, max_restarts=-1, max_task_retries=-1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            self._sinks[root] = actor.remote(root)
        return self._sinks[root]

    def start(self, store: Store, run: RunRecord) -> None:
        ray = _ray()
        connect()
        root = str(store.root)
        res = run.spec.get("resources", {})
        env = {str(k): str(v) for k, v in run.options.get("env", {}).items()}
        driver_node = ray.get_runtime_context().get_node_id()
        global _remote_task
        if _remote_task is None:
            _remote_task = ray.remote(_task)
        task = _remote_task.options(num_cpus=float(res.get("cpus", 1.0)), num_gpus=float(res.get("gpus", 0.0)),
                                         max_retries=0, name=f"kdlab-run-{run.id}")
        ref = task.remote(run.id, self.sink(root), root, driver_node, env)
        store.update_run(run.id, heartbeat=time.time())
        store.log(run.id, f"submitted to Ray ({ray.get_runtime_context().gcs_address}) as a task needing "
                          f"{res.get('cpus', 1.0):g} CPU, {res.get('gpus', 0.0):g} GPU")
        with self._lock:
            self._refs[run.id] = (ref, run.attempt, root)
            if self._monitor is None or not self._monitor.is_alive():
                self._monitor = threading.Thread(target=self._watch, daemon=True, name="kdlab-ray-monitor")
                self._monitor.start()

    def alive(self, store: Store, run: RunRecord) -> tuple[bool | None, str]:
        entry = self._refs.get(run.id)
        if entry is None or entry[1] != run.attempt:
            return super().alive(store, run)  # a run submitted by another process: its heartbeat
        ray = _ray()
        ready, _ = ray.wait([entry[0]], timeout=0, fetch_local=False)
        if not ready:
            return True, ""
        return False, f"the Ray task of run {run.id} ended without recording a result: {_outcome(entry[0])}"

    def stop(self, store: Store, run: RunRecord, force: bool = False) -> None:
        entry = self._refs.get(run.id)
        if entry is None:
            return  # the task's heartbeat sees the cancel flag
        if force or run.pid is None:  # killed, or still waiting for resources (never reported in)
            with contextlib.suppress(Exception):
                _ray().cancel(entry[0], force=force)

    def _watch(self) -> None:
        """Heartbeat for submitted tasks, cancel of waiting ones, and the end of tasks that died."""
        from kdlab.runs.scheduler import mark_gone, start_queued

        ray = _ray()
        stores: dict[str, Store] = {}
        while True:
            with self._lock:
                if not self._refs:
                    self._monitor = None
                    return
                entries = dict(self._refs)
            refs = [e[0] for e in entries.values()]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=HEARTBEAT_S, fetch_local=False)
            done = {r.hex() for r in ready}
            for run_id, (ref, attempt, root) in entries.items():
                store = stores.setdefault(root, Store(root))
                try:
                    run = store.get_run(run_id)
                    if ref.hex() not in done:
                        if run.status == "running" and run.attempt == attempt:
                            cancel = store.heartbeat(run_id)
                            if cancel and run.pid is None:
                                ray.cancel(ref)
                        continue
                    with self._lock:
                        self._refs.pop(run_id, None)
                    if run.status == "running" and run.attempt == attempt:
                        mark_gone(store, run, f"the Ray task of run {run_id} ended without recording a result: "
                                              f"{_outcome(ref)}", returncode=1)
                    start_queued(store)
                except Exception as e:  # never let the monitor die on one bad run
                    print(f"kdlab ray monitor: run {run_id}: {e}\n{traceback.format_exc()}", flush=True)


def _outcome(ref: Any) -> str:
    ray = _ray()
    try:
        return f"it returned {ray.get(ref, timeout=5)!r}"
    except Exception as e:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}"


def shutdown() -> None:
    """Forget this process's sinks and task references (call before ``ray.shutdown()``)."""
    from kdlab.runs.executors import _instances

    ex = _instances.get("ray")
    if isinstance(ex, RayExecutor):
        with ex._lock:
            ex._sinks.clear()
            ex._refs.clear()
