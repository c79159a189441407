"""Run a notebook headless with small parameters and read back what its last cell reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def inject(nb: nbformat.NotebookNode, **params: Any) -> None:
    """Replace the ``parameters``-tagged cell by one assigning ``params``."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in params.items())


def run_notebook(name: str, workdir: Path, result: str, timeout: int = 300, **params: Any) -> dict[str, Any]:
    """Execute ``notebooks/<name>`` in ``workdir`` with ``params`` injected, then a cell printing
    ``RESULT=json.dumps(<result>)``; returns that dict."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    inject(nb, **params)
    nb.cells.append(nbformat.v4.new_code_cell(f"import json\nprint('RESULT=' + json.dumps({result}))"))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    return json.loads(out.split("RESULT=", 1)[1])
