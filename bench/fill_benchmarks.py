"""Fill BENCHMARKS.md's ``@@NAME@@`` markers from ``bench/results/<name>.md`` (each names its machine).

    python -m bench.fill_benchmarks   # after running the benches; markers stay in BENCHMARKS.template.md
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def section(name: str) -> str:
    """A result file's text (its first line names the machine, threads included)."""
    path = RESULTS / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the bench that writes it (bench/bench_*.py)")
    return path.read_text().strip()


def main() -> None:
    template = (ROOT / "bench" / "BENCHMARKS.template.md").read_text()
    text = re.sub(r"@@([a-z_]+)@@", lambda m: section(m.group(1)), template)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
