"""The two commands timed from a fresh clone: ``kdlab demo`` (median of several runs, set-up excluded) and the
whole ``make test``.

    python -m bench.bench_fresh_clone --demo-runs 3 --suite

It clones the repository's committed HEAD into a temporary folder, builds that clone's ``.venv`` once with
``make venv`` (set-up: not timed), then times ``.venv/bin/kdlab demo`` with a fresh ``KDLAB_HOME`` and
``KDLAB_CACHE`` each run (the teacher is trained every time: nothing cached) and, with ``--suite``, ``make test``.
Writes ``results/fresh_clone.md``/``.json``.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import markdown, save

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.call(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0, code, log.read_text(errors="replace")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo-runs", type=int, default=3)
    p.add_argument("--suite", action="store_true", help="also time the whole `make test`")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdlab-fresh-"))
    clone = work / "kdlab"
    subprocess.check_call(["git", "clone", "-q", str(ROOT), str(clone)])
    commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True).strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDLAB_")}
    setup_s, code, out = _run(["make", "venv"], clone, env, work / "setup.log")
    if code:
        raise SystemExit(f"make venv failed:\n{out[-3000:]}")
    rows, times = [], []
    for i in range(args.demo_runs):
        run_env = {**env, "KDLAB_HOME": str(work / f"home{i}"), "KDLAB_CACHE": str(work / f"cache{i}")}
        secs, code, out = _run([str(clone / ".venv" / "bin" / "kdlab"), "demo"], clone, run_env, work / f"demo{i}.log")
        if code:
            raise SystemExit(f"kdlab demo failed:\n{out[-3000:]}")
        kd = re.search(r"student \(mlp, kd\)\s+(\S+)\s+(\S+)", out)
        listed = subprocess.check_output([str(clone / ".venv" / "bin" / "kdlab"), "runs"], cwd=clone, env=run_env,
                                         text=True)
        times.append(secs)
        rows.append({"run": i + 1, "kdlab demo (s)": round(secs, 1), "KD student test acc": kd.group(2) if kd else "?",
                     "runs listed by `kdlab runs`": sum(1 for line in listed.splitlines()[1:] if "completed" in line)})
    text = [f"Fresh clone of commit {commit}; `make venv` (set-up, not timed) took {setup_s:.0f} s.", "",
            "`kdlab demo` (teacher trained every run: fresh `KDLAB_HOME` and `KDLAB_CACHE`; target: at most 180 s):",
            "",
            markdown(rows), "", f"Median: **{statistics.median(times):.1f} s** over {len(times)} runs."]
    data: dict[str, object] = {"commit": commit, "setup_s": setup_s, "demo_s": times}
    if args.suite:
        secs, code, out = _run(["make", "test"], clone, {**env, "KDLAB_HOME": str(work / "suite-home")},
                               work / "suite.log")
        summary = next((line for line in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed)", line)), "?")
        text += ["", f"`make test` (the whole suite, venv already built): **{secs / 60:.1f} min** wall time, exit "
                 f"code {code}; pytest: `{summary.strip('= ')}` (target: at most 12 minutes on 2 cores)."]
        data.update(suite_s=secs, suite_code=code, suite_summary=summary)
    save("fresh_clone", "\n".join(text), data)


if __name__ == "__main__":
    main()
