"""notebooks/02_representations.ipynb executed headless with small parameters (nbclient)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_representations.ipynb"


def test_representations_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = ("n_train = 300\nteacher_epochs = 1\nstudent_epochs = 1\nmax_samples = 200\nwidth = 8\n"
                   "embedding = 'pca'")
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nprint('RESULT=' + json.dumps({'epochs': sorted(recorder.frame()['epoch'].unique().tolist()), "
        "'n': rep.cka.attrs['n_samples'], 'ranked': len(ranking)}))"))
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    res = json.loads(out.split("RESULT=", 1)[1])
    assert res == {"epochs": [0, 1], "n": 200, "ranked": 4}
