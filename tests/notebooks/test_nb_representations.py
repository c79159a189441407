"""notebooks/02_representations.ipynb executed headless with small parameters (nbclient)."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = pytest.mark.slow


def test_representations_notebook_runs(tmp_path):
    res = run_notebook(
        "02_representations.ipynb", tmp_path,
        "{'epochs': sorted(recorder.frame()['epoch'].unique().tolist()), 'n': rep.cka.attrs['n_samples'], "
        "'ranked': len(ranking)}",
        timeout=240, n_train=300, teacher_epochs=1, student_epochs=1, max_samples=200, width=8, embedding="pca")
    assert res == {"epochs": [0, 1], "n": 200, "ranked": 4}
