"""``wait_for``: poll a condition in a test until it holds or a deadline passes (imported by name; tests/ is on
sys.path through its conftest)."""
from __future__ import annotations

import time
from typing import Any


def wait_for(pred: Any, timeout: float = 60.0, poll: float = 0.05, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
