"""Run a notebook headless with small parameters and read back what its last cell reports.

Hangs fail fast here instead of at CI's job limit:

- ``timeout`` (per cell): no cell may run longer (nbclient raises ``CellTimeoutError`` naming the cell); keep it under
  the test's ``@pytest.mark.timeout`` so this clearer error comes first.
- ``IOPUB_TIMEOUT`` / ``raise_on_iopub_timeout``: once a cell replied, its outputs must be in within 30 s.
- ``_Client`` waits on the kernel's sockets in slices of at most ``POLL_SLICE_S``. The hang of issue #17 was a
  lost wake-up in nbclient itself: its Output-widget emulation (``nbclient.output_widget.OutputWidget``) sends a
  ``comm_msg`` on the *shell* socket for every output a widget captures (``with out: display(...)``), from its
  iopub task, while its reply task sits in ``await shell_socket.poll(timeout)``. Under CPU load that send
  can swallow the (edge-triggered) wake-up of an ``execute_reply`` arriving at the same moment: the reply then
  sits unread in the socket, kernel idle, until the poll's timeout expires (the cell "hangs" ``timeout`` seconds
  and then passes). Polling in short slices re-checks the socket, so a lost wake-up costs one slice.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
IOPUB_TIMEOUT = 30
POLL_SLICE_S = 1.0


def inject(nb: nbformat.NotebookNode, **params: Any) -> None:
    """Replace the ``parameters``-tagged cell by one assigning ``params``."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in params.items())


def _in_slices(get_msg: Any) -> Any:
    """``channel.get_msg`` that polls at most ``POLL_SLICE_S`` at a time until its own timeout (None: forever)."""

    async def sliced(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(timeout=POLL_SLICE_S if left is None else max(0.0, min(POLL_SLICE_S, left)))
            except Empty:
                if left is not None and left <= POLL_SLICE_S:
                    raise

    return sliced


class _Client(NotebookClient):
    """A ``NotebookClient`` whose waits on the shell and iopub sockets wake at least once a second."""

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = _in_slices(channel.get_msg)
        return kc


def run_notebook(name: str, workdir: Path, result: str, timeout: int = 180, **params: Any) -> dict[str, Any]:
    """Execute ``notebooks/<name>`` in ``workdir`` with ``params`` injected, then a cell printing
    ``RESULT=json.dumps(<result>)``; returns that dict. Any cell running over ``timeout`` seconds fails."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    inject(nb, **params)
    nb.cells.append(nbformat.v4.new_code_cell(f"import json\nprint('RESULT=' + json.dumps({result}))"))
    _Client(nb, timeout=timeout, iopub_timeout=IOPUB_TIMEOUT, raise_on_iopub_timeout=True,
            kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    return json.loads(out.split("RESULT=", 1)[1])
