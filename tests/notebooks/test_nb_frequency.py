"""notebooks/04_frequency.ipynb executed headless with small parameters (nbclient)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_frequency.ipynb"


def test_frequency_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = ("n_train = 300\nteacher_epochs = 1\nstudent_epochs = 1\nteacher_width = 8\nstudent_width = 4\n"
                   "n_images = 60\nheatmap_images = 8\neps = 4.0\ngraph_nodes = 200\ngraph_epochs = 20\nseeds = 1\n"
                   "homophily = 0.8\ngraph_features = 16\ngraph_signal = 0.5\navg_degree = 4.0")
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nprint('RESULT=' + json.dumps({'models': sorted(art.bands.model.unique()), "
        "'maps': sorted(art.heatmaps), 'graph': table.model.tolist(), 'n': art.heatmaps['teacher'].n_images}))"))
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    res = json.loads(out.split("RESULT=", 1)[1])
    assert res["models"] == ["KD student", "teacher", "vanilla"] and res["maps"] == res["models"]
    assert res["graph"] == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"] and res["n"] == 8
