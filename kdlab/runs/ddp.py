"""A small multi-process launcher for one run: ``python -m kdlab.runs.ddp N -- CMD ...``.

Starts ``N`` copies of ``CMD`` with the environment ``torch.distributed`` (and so ``accelerate.Accelerator``)
reads: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (a
free port on this machine). The Accelerator then picks gloo on the CPU (``device: cpu`` or no GPU) and
NCCL with one GPU per rank otherwise.

Why not ``torchrun``/``accelerate launch``: their ranks run in sessions of their own, so signalling the
launcher's process group would not reach them, and a killed launcher leaves its ranks behind. Here every
rank stays in the launcher's process group (the local executor starts the launcher as a group leader), so
one ``killpg`` stops the whole run, and the launcher ends the other ranks as soon as one fails:

- a rank exits with a non-zero code or a signal: the others get SIGTERM (SIGKILL after ``GRACE_S``); the
  launcher exits with that rank's code;
- the launcher gets SIGTERM/SIGINT: it is passed on to every rank (they record ``cancelled``).

``kdlab train spec.yaml`` and ``python -m kdlab.runs.worker`` also run under ``accelerate launch`` or
``torchrun`` directly; only rank 0 writes results.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

GRACE_S = 10.0
ENV_FLAG = "KDLAB_DDP_LAUNCHER"  # set for the ranks: signal the whole group to cancel the run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(n: int, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``n`` ranks of ``cmd``; returns 0 when all succeed, else the first failing rank's exit code."""
    base = dict(os.environ if env is None else env)
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(n),
                LOCAL_WORLD_SIZE=str(n), GROUP_RANK="0", **{ENV_FLAG: "1"})
    procs = [subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(n)]
    stopping = {"signal": None}

    def forward(signum: int, _frame: object) -> None:
        stopping["signal"] = signum
        for p in procs:
            if p.poll() is None:
                _signal(p, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code, failed_at = 0, None
    while any(p.poll() is None for p in procs):
        for rank, p in enumerate(procs):
            rc = p.poll()
            if rc not in (None, 0) and failed_at is None:
                code, failed_at = _code(rc), time.monotonic()
                why = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
                print(f"kdlab ddp: rank {rank} {why}; stopping the other ranks", file=sys.stderr, flush=True)
                for q in procs:
                    if q.poll() is None:
                        _signal(q, signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
            for q in procs:
                if q.poll() is None:
                    _signal(q, signal.SIGKILL)
        time.sleep(0.05)
    if code == 0:
        bad = [_code(p.returncode) for p in procs if p.returncode != 0]
        code = bad[0] if bad else 0
    return code


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


def _signal(p: subprocess.Popen, signum: int) -> None:
    try:
        p.send_signal(signum)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m kdlab.runs.ddp N -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return launch(int(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main())
