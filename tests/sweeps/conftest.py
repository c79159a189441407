"""The sweep tests use the run-store helpers of tests/runs (``tiny_spec``, ``wait_for``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
