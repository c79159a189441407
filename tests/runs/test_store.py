"""The run store: schema, names and paths, metrics polling, concurrency, liveness, queue logic (no training)."""
from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
from runs_helpers import tiny_spec

import kdlab
from kdlab.errors import CheckpointError, ConfigError, UnknownNameError
from kdlab.runs import executors as ex_mod
from kdlab.runs.background import RunHandle, cancel_run, launch, resume_run
from kdlab.runs.executors import Executor, register_executor
from kdlab.runs.scheduler import reconcile, refresh
from kdlab.runs.store import Store, StoreError, check_artifact_name, check_run_id, open_store
from kdlab.runs.worker import execute

BAD_NAMES = ["", "..", ".", "../x", "x/../../y", "a/b", "/etc/passwd", "/", "a\x00b", "\x00", ".hidden",
             "a\\b", "x" * 200, "a b", "~root", "-rf"]


# ------------------------------------------------------------------------------------------ basics

def test_create_get_list(store):
    rid = store.create_run(tiny_spec(), name="first", tags=["a"])
    rec = store.get_run(rid)
    assert rec.status == "queued" and rec.name == "first" and rec.tags == ["a"]
    assert rec.spec["data"]["name"] == "mnist5k" and rec.run_dir == store.runs_dir / rid and rec.run_dir.is_dir()
    df = store.list_runs()
    assert list(df["id"]) == [rid] and df.loc[0, "status"] == "queued" and df.loc[0, "epochs"] == 2
    store.rename_run(rid, "renamed")
    assert store.tag_run(rid, "b", "c", remove=["a"]) == ["b", "c"]
    assert store.get_run(rid).name == "renamed"
    assert store.resolve(rid[:17]) == rid and store.resolve("renamed") == rid
    second = store.create_run(tiny_spec(), name="second", status="completed")
    assert [r.id for r in store.records(limit=1)] == [second]
    assert [r.id for r in store.records()] == [second, rid] == list(store.list_runs()["id"])
    assert [r.id for r in store.records("queued", limit=5)] == [rid]
    with pytest.raises(UnknownNameError, match="unknown run"):
        store.get_run("no-such-run")
    with pytest.raises(ConfigError, match="spec"):
        store.create_run({"optim": {"epochs": 0}})


def test_wal_and_busy_timeout(store):
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn().execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_status_and_logs(store):
    rid = store.create_run(tiny_spec())
    assert store.set_status(rid, "running")
    assert not store.set_status(rid, "completed", expect=("queued",))  # guarded transition
    assert store.set_status(rid, "failed", error="boom", traceback="Traceback ...", expect=("running",))
    rec = store.get_run(rid)
    assert rec.status == "failed" and rec.error == "boom" and rec.finished >= rec.started
    store.log(rid, "hello", "warning")
    logs = store.logs(rid)
    assert list(logs.columns) == ["seq", "time", "level", "message"]
    assert logs["message"].iloc[-1] == "hello" and "failed: boom" in set(logs["message"])
    with pytest.raises(ConfigError, match="status"):
        store.set_status(rid, "exploded")


def test_delete_run(store):
    rid = store.create_run(tiny_spec())
    store.log_metrics(rid, 1, {"loss": 1.0})
    store.artifact_path(rid, "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="cancel it first"):
        store.delete_run(rid)
    store.set_status(rid, "cancelled")
    store.delete_run(rid)
    assert not (store.runs_dir / rid).exists() and store.list_runs().empty
    assert store.metrics(rid).empty


# ------------------------------------------------------------------------------------------ names & paths

@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_run_ids_and_artifact_names_rejected(store, bad):
    rid = store.create_run(tiny_spec())
    with pytest.raises(ConfigError, match="invalid"):
        check_run_id(bad)
    for call in (lambda: store.get_run(bad), lambda: store.run_dir(bad), lambda: store.delete_run(bad),
                 lambda: store.metrics(bad), lambda: store.log(bad, "x"), lambda: store.artifact_path(bad, "a"),
                 lambda: store.set_status(bad, "failed"), lambda: store.create_run(tiny_spec(), run_id=bad)):
        with pytest.raises(ConfigError, match="invalid"):
            call()
    with pytest.raises(ConfigError, match="invalid"):
        store.artifact_path(rid, bad)
    assert sorted(os.listdir(store.runs_dir)) == [rid]  # nothing created anywhere


def test_artifact_names(store, tmp_path):
    rid = store.create_run(tiny_spec())
    p = store.artifact_path(rid, "report-1.html")
    assert p == store.runs_dir / rid / "artifacts" / "report-1.html"
    p.write_text("ok")
    assert store.artifacts(rid) == ["report-1.html"]
    for bad in ("a..b", "...", "x/y"):
        with pytest.raises(ConfigError):
            check_artifact_name(bad)


def test_symlinks_cannot_escape(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    rid = store.create_run(tiny_spec())
    (store.runs_dir / rid / "artifacts").mkdir()
    (store.runs_dir / rid / "artifacts" / "evil").symlink_to(outside / "keep.txt")
    with pytest.raises(ConfigError, match="outside the store"):
        store.artifact_path(rid, "evil")
    (store.runs_dir / "linked-run").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the store"):
        store.run_dir("linked-run")
    assert (outside / "keep.txt").read_text() == "precious"


def test_store_folder_not_writable(tmp_path, monkeypatch):
    # Tests run as root, where chmod does not stop writes; a path whose parent is a regular file cannot be
    # created by anyone, so it is the honest portable case. (The chmod case runs for non-root users.)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="not a writable folder"):
        open_store(blocker / "store")
    with pytest.raises(StoreError, match="not a writable folder"):
        launch(tiny_spec(), store=blocker / "store")
    with pytest.raises(StoreError):
        open_store(blocker)  # the store root itself is a file
    monkeypatch.setenv("KDLAB_HOME", str(blocker / "home"))
    with pytest.raises(StoreError, match="KDLAB_HOME"):
        kdlab.launch(tiny_spec())
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_store_folder_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not a writable folder"):
            open_store(ro)
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------------------ metrics

def test_metrics_tidy_and_incremental(store):
    rid = store.create_run(tiny_spec())
    assert not store.has_metrics(rid)
    store.add_metrics(rid, [{"step": 5, "epoch": 0.5, "key": "train/loss", "value": 2.0}])
    assert not store.has_metrics(rid, kind="epoch") and store.has_metrics(rid)
    store.add_metrics(rid, [(10, 1, "step", "train/loss", 1.5, None), (10, 1, "epoch", "val/acc", 0.5, None)])
    assert store.has_metrics(rid, kind="epoch") and not store.has_metrics(rid, kind="test")
    df = store.metrics(rid)
    assert list(df.columns) == ["seq", "step", "epoch", "kind", "key", "value", "time"]
    assert list(df["step"]) == [5, 10, 10] and df["seq"].is_monotonic_increasing
    assert list(store.metrics(rid, since_step=5)["key"]) == ["train/loss", "val/acc"]
    assert store.metrics(rid, since_step=10).empty
    assert len(store.metrics(rid, since_seq=int(df["seq"].iloc[0]))) == 2
    assert list(store.metrics(rid, kind="epoch")["key"]) == ["val/acc"]
    assert store.history(rid).loc[1, "val/acc"] == 0.5
    store.add_metrics(rid, [(11, 1.1, "step", "train/loss", float("nan"), None)])
    assert store.metrics(rid, since_step=10)["value"].isna().all()  # NaN stays NaN
    assert store.truncate_metrics(rid, 5) == 3 and list(store.metrics(rid)["step"]) == [5]


def _writer(root: str, run_id: str, n: int, start, errors) -> None:
    try:
        store = Store(root)
        start.wait()
        for i in range(n):  # one transaction per row: the worst case for lock contention
            store.log_metrics(run_id, i, {"x": float(i)}, epoch=i / n)
    except BaseException as e:  # reported to the parent (a child's exception is otherwise invisible)
        errors.put(f"{run_id}: {type(e).__name__}: {e}")
        raise


def test_eight_processes_write_concurrently(store):
    n, procs = 1000, 8
    ids = [store.create_run(tiny_spec(seed=i)) for i in range(procs)]
    ctx = mp.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(store.root), rid, n, start, errors)) for rid in ids]
    for w in workers:
        w.start()
    start.set()
    seen, last, t0 = [], None, time.monotonic()
    while any(w.is_alive() for w in workers) and time.monotonic() - t0 < 120:
        new = store.metrics(ids[0], since_step=last)  # a poller reading while all eight write
        if len(new):
            seen += list(new["step"])
            last = int(new["step"].max())
        time.sleep(0.01)
    for w in workers:
        w.join(timeout=60)
    msgs = []
    while not errors.empty():
        msgs.append(errors.get())
    assert not msgs, msgs
    assert all(w.exitcode == 0 for w in workers)
    seen += list(store.metrics(ids[0], since_step=last)["step"])
    assert seen == list(range(n))  # incremental polling saw every row once, in order
    for rid in ids:
        df = store.metrics(rid)
        assert len(df) == n and sorted(df["step"]) == list(range(n))
    assert store._read("SELECT COUNT(*) FROM metrics")[0][0] == n * procs


def test_store_callback_batches_and_orders(store):
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.store import StoreCallback

    rid = store.create_run(tiny_spec(epochs=3))
    commits = []
    real = store.add_metrics

    def counting(run_id, rows, events=()):
        rows = list(rows)
        commits.append(len(rows))
        return real(run_id, rows, events)

    store.add_metrics = counting
    run_experiment(tiny_spec(epochs=3), store.run_dir(rid), callbacks=[StoreCallback(store, rid)], log_every=2)
    df = store.metrics(rid)
    epochs = df[df["kind"] == "epoch"]
    assert sorted(epochs["epoch"].unique()) == [1, 2, 3]
    assert {"train/loss", "val/acc", "lr"} <= set(epochs["key"])
    steps = df[df["kind"] == "step"]
    assert list(steps["step"]) == list(range(2, 16, 2))  # 5 steps per epoch, logged every 2
    assert df["step"].is_monotonic_increasing  # commits in step order: since_step polling is complete
    assert len(commits) <= 3 + 1  # one commit per epoch (plus the start line)
    assert store.history(rid).shape[0] == 3


# ------------------------------------------------------------------------------------------ liveness

def _dead_pid(zombie: bool) -> tuple[int, float, subprocess.Popen]:
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    created = psutil.Process(proc.pid).create_time()
    proc.kill()
    if zombie:
        time.sleep(0.2)  # killed, not reaped: a zombie as seen when the launcher exited and pid 1 doesn't reap
    else:
        proc.wait()
    return proc.pid, created, proc


@pytest.mark.parametrize("case", ["gone", "zombie", "pid-reused"])
def test_dead_worker_noticed_by_reconcile_not_by_reads(store, case):
    rid = store.create_run(tiny_spec())
    store.log_metrics(rid, 3, {"train/loss": 1.0})
    assert store.claim_next("local", None).id == rid
    if case == "pid-reused":  # a live process, but not the one that was started (its start time differs)
        pid, created, proc = os.getpid(), 12345.0, None
    else:
        pid, created, proc = _dead_pid(zombie=case == "zombie")
    store.update_run(rid, pid=pid, pid_start=created, host=ex_mod.hostname())
    assert store.get_run(rid).status == "running" and store.list_runs()["status"].tolist() == ["running"]  # pure
    t0 = time.monotonic()
    reconcile(store)
    rec = store.get_run(rid)
    assert time.monotonic() - t0 < 2
    assert rec.status == "interrupted"
    assert "gone without recording a result" in rec.error and "resume() starts over" in rec.error
    assert len(store.metrics(rid)) == 1  # what was written stays
    if proc is not None:
        proc.wait()


def test_cancel_flag_on_dead_worker_gives_cancelled(store):
    rid = store.create_run(tiny_spec())
    store.claim_next("local", None)
    pid, created, proc = _dead_pid(zombie=False)
    store.update_run(rid, pid=pid, pid_start=created, host=ex_mod.hostname(), cancel_requested=True)
    refresh(store)
    assert store.get_run(rid).status == "cancelled"


# ------------------------------------------------------------------------------------------ queue logic

@pytest.fixture
def fake_executor():
    started = []

    @register_executor("fake-test")
    class Fake(Executor):
        def start(self, store, run):
            started.append(run.id)
            store.update_run(run.id, heartbeat=time.time())

    yield started
    ex_mod.EXECUTORS.pop("fake-test", None)
    ex_mod._instances.pop("fake-test", None)


def test_queue_claims_up_to_limit(store, fake_executor):
    store.max_concurrent = 2
    handles = [launch(tiny_spec(seed=i), executor="fake-test", store=store) for i in range(4)]
    assert [h.status for h in handles] == ["running", "running", "queued", "queued"]
    assert fake_executor == [h.id for h in handles[:2]]
    assert cancel_run(store, handles[3].id) == "cancelled"  # a queued run is dropped at once
    store.set_status(handles[0].id, "completed", expect=("running",))
    assert handles[2].status == "queued"  # reading starts nothing: the store is pure
    refresh(store)  # the one explicit scheduling call (the dashboard's tick makes it)
    assert handles[2].status == "running" and handles[3].status == "cancelled"
    store.max_concurrent = 0  # pauses the queue
    h = launch(tiny_spec(seed=9), executor="fake-test", store=store)
    assert h.status == "queued"
    store.max_concurrent = 5
    assert h.status == "queued"  # a setting is not a scheduling call
    refresh(store)
    assert h.status == "running"
    with pytest.raises(UnknownNameError, match="fake-test"):
        launch(tiny_spec(), executor="fake-tset", store=store)


def test_max_concurrent_env(store, monkeypatch):
    assert store.max_concurrent == 2
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "5")
    assert store.max_concurrent == 5
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "many")
    with pytest.raises(ConfigError, match="KDLAB_MAX_CONCURRENT"):
        store.max_concurrent  # noqa: B018


FREED_HEAP = """
import ctypes, torch
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
x = torch.ones(50_000_000); del x  # 200 MB
print(libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc malloc settings")
def test_local_worker_environment(store, monkeypatch):
    """Threads follow resources.cpus unless the run's env says otherwise; the allocator settings keep a freed
    200 MB tensor in the worker's heap (glibc would unmap it), and a user's own MALLOC_* value wins."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *ex_mod.ALLOCATOR_ENV):
        monkeypatch.delenv(var, raising=False)
    run = store.get_run(store.create_run(tiny_spec(resources={"cpus": 2}), options={"env": {"OMP_NUM_THREADS": "3"}}))
    env = ex_mod.LocalExecutor().environment(run)
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("3", "2")
    assert {k: env[k] for k in ex_mod.ALLOCATOR_ENV} == ex_mod.ALLOCATOR_ENV

    def freed(e):
        return int(subprocess.run([sys.executable, "-c", FREED_HEAP], env=e, capture_output=True, text=True,
                                  check=True).stdout)

    assert freed(env) >= 200e6 > 10 * freed(dict(os.environ))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(1 << 20))  # the user's value: large tensors mmapped again
    env = ex_mod.LocalExecutor().environment(run)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(1 << 20) and freed(env) < 20e6


def test_launch_rejects_before_queueing(store):
    with pytest.raises(ConfigError, match="optim.lr"):
        launch(tiny_spec(optim={"lr": -1}), store=store)
    # 64 DDP ranks on GPUs: more than the visible GPUs (or no GPU at all) is refused by the local executor
    with pytest.raises(ConfigError, match="resources.processes|device: 'cuda'"):
        launch(tiny_spec(device="cuda", resources={"processes": 64}), store=store)
    assert store.list_runs().empty


# ------------------------------------------------------------------------------------------ checkpoints

def _checkpoint(path, truncate: bool) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.randn(64, 64)}, "optimizer": {}, "scheduler": {}, "epoch": 1,
                "global_step": 5, "history": [], "best": {}}, path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-a-run-checkpoint"])
def test_resume_refuses_bad_checkpoint(store, damage):
    rid = store.create_run(tiny_spec())
    store.set_status(rid, "interrupted", error="killed")
    last = store.run_dir(rid) / "checkpoints" / "last.pt"
    if damage == "truncated":
        before = _checkpoint(last, truncate=True)
    elif damage == "garbage":
        last.parent.mkdir(parents=True)
        last.write_bytes(b"\x00not a checkpoint" * 10)
        before = last.read_bytes()
    else:
        last.parent.mkdir(parents=True)
        torch.save({"model": {}}, last)
        before = last.read_bytes()
    files = sorted(p.name for p in last.parent.iterdir())
    with pytest.raises(CheckpointError, match="last.pt"):
        RunHandle(store, rid).resume()
    assert last.read_bytes() == before and sorted(p.name for p in last.parent.iterdir()) == files
    assert store.get_run(rid).status == "interrupted"
    # the worker refuses too (e.g. the file was damaged after resume was accepted): failed, nothing overwritten
    store.update_run(rid, resume=True)
    store.set_status(rid, "running")
    assert execute(rid, store.root, own_process=False) == "failed"
    rec = store.get_run(rid)
    assert rec.status == "failed" and "CheckpointError" in rec.error and "CheckpointError" in rec.traceback
    assert last.read_bytes() == before and sorted(p.name for p in last.parent.iterdir()) == files


def test_resume_rules(store):
    store.max_concurrent = 0  # keep the queued run queued
    rid = store.create_run(tiny_spec())
    with pytest.raises(ConfigError, match="queued"):
        resume_run(store, rid)
    store.set_status(rid, "completed")
    with pytest.raises(ConfigError, match="completed"):
        resume_run(store, rid)
