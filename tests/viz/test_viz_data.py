from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from viz_helpers import make_history, to_tidy

from kdlab.errors import ConfigError, ShapeError
from kdlab.viz.data import as_history, as_predictions, as_probabilities, loss_terms


def test_history_list_and_tidy_store_rows_give_the_same_table(history):
    wide = as_history(history)
    tidy = as_history(to_tidy(history))  # step rows (value 99) are ignored when epoch rows exist
    assert wide.index.name == "epoch" and list(wide.index) == [1.0, 2.0, 3.0]
    pd.testing.assert_frame_equal(wide, tidy[wide.columns])
    assert wide.loc[2.0, "val/acc"] == history[1]["val/acc"]


def test_result_dict_and_wide_frames_are_read():
    h = make_history(epochs=2)
    assert as_history({"history": h}).equals(as_history(h))
    store_style = pd.DataFrame(h).set_index("epoch")  # store.history(): index named epoch
    pd.testing.assert_frame_equal(as_history(store_style), as_history(h))


def test_tidy_rows_without_epochs_use_steps():
    df = pd.DataFrame({"step": [1, 2, 2], "key": ["a", "a", "b"], "value": [0.5, 0.25, 3.0]})
    wide = as_history(df)
    assert wide.index.name == "step"
    assert wide["a"].tolist() == [0.5, 0.25] and np.isnan(wide.loc[1.0, "b"])


def test_loss_terms_are_the_train_terms_without_total_and_accuracy():
    h = as_history(make_history(terms=("ce", "kd", "feat")))
    assert loss_terms(h) == ["train/ce", "train/kd", "train/feat"]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="history"):
        as_history({"spec": {}})
    with pytest.raises(ConfigError):
        as_history(42)
    with pytest.raises(ShapeError):
        as_probabilities(np.zeros(3))


def test_array_helpers_take_tensors_logits_and_indices():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0]], requires_grad=True)
    assert as_predictions(logits).tolist() == [1, 0]
    assert as_predictions([1, 0]).tolist() == [1, 0]
    p = as_probabilities(logits)
    assert p.dtype == np.float64 and np.allclose(p.sum(1), 1) and p[0, 1] > p[0, 0]
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert np.array_equal(as_probabilities(probs), probs)  # probabilities are kept as they are


def test_viz_and_report_modules_do_not_import_torch_at_module_level():
    import ast
    from pathlib import Path

    import kdlab

    root = Path(kdlab.__file__).parent
    for path in [*sorted((root / "viz").glob("*.py")), *sorted((root / "report").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0] == "torch" or n.startswith(("kdlab.distill",))
                   or (n.startswith("kdlab.runs") and n != "kdlab.runs.artifacts")]  # artifacts: numpy only
            assert not bad, f"{path.name} imports {bad} at module level"
