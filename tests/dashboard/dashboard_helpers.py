"""Helpers of the browser tests: the dashboard server on a free localhost port (imported by name)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("KDLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int | None = None, timeout: float = 90.0, args: Sequence[str] = (),
                 host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """``kdlab serve`` (plus ``args``) in a subprocess with ``KDLAB_HOME=home``; returns it and its URL on
    ``host`` once it answers."""
    port = port or free_port()
    env = {**os.environ, "KDLAB_HOME": str(home), "KDLAB_MAX_CONCURRENT": "2", "OMP_NUM_THREADS": "1"}
    log = open(home.parent / f"server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "kdlab.cli", "serve", "--port", str(port), *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard server exited: {Path(log.name).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the dashboard server did not answer within {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


#: A tiny finished run (digits, MLP teacher and student, one epoch) for the analysis pages.
TINY_SPEC = {"name": "tiny", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 200}},
             "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1, "batch_size": 64}},
             "student": {"name": "mlp", "params": {"width": 8}}, "method": {"name": "kd"},
             "optim": {"epochs": 1, "batch_size": 64}}


@contextlib.contextmanager
def page_with_run(browser: Any, home: Path, tab: str, name: str = "tiny", height: int = 1400) -> Iterator[Any]:
    """A browser page on the dashboard's ``tab``, the store holding one finished tiny run named ``name``."""
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.store import open_store

    spec = {**TINY_SPEC, "name": name}
    store = open_store(home)
    run_experiment(spec, run_dir=store.run_dir(store.create_run(spec, status="completed")))
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.goto(url)
        page.locator(".bk-tab", has_text=tab).first.click(timeout=60_000)
        yield page
        page.close()
    finally:
        stop_server(proc)
