"""The main job (``make demo`` / ``kdlab demo``): a ConvNet teacher, an MLP student with and without KD."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.runs.experiment import run_experiment
from kdlab.runs.spec import ExperimentSpec, load_spec

REPORT = "report.html"


def demo_specs(seed: int = 0, epochs: int = 10, teacher_epochs: int = 10,
               data: str = "mnist5k") -> dict[str, ExperimentSpec]:
    """The two student runs of the demo (vanilla and KD) sharing one cached ConvNet teacher."""
    base: dict[str, Any] = {
        "seed": seed, "data": {"name": data},
        "teacher": {"name": "convnet", "params": {"width": 64, "norm": "batchnorm"},
                    "optim": {"epochs": teacher_epochs, "lr": 0.05}},
        "student": {"name": "mlp", "params": {"width": 256, "depth": 2}},
        "optim": {"name": "sgd", "lr": 0.05, "epochs": epochs, "batch_size": 128},
    }
    return {
        "vanilla": load_spec({**base, "name": "demo-vanilla", "method": {"name": "vanilla"}}),
        "kd": load_spec({**base, "name": "demo-kd", "method": {"name": "kd", "params": {"temperature": 4.0}}}),
    }


def summary_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per model: val/test accuracy, teacher agreement, training time."""
    any_run = next(iter(results.values()))
    t = any_run.teacher
    rows = [{"model": f"teacher ({any_run.spec['teacher']['name']})", "val_acc": t.get("val/acc"),
             "test_acc": t.get("test/acc"), "agreement": 1.0, "time_s": t.get("train_time_s")}]
    for name, r in results.items():
        s = r.student
        rows.append({"model": f"student ({r.spec['student']['name']}, {name})",
                     "val_acc": s["last"].get("val/acc"), "test_acc": s["test/acc"],
                     "agreement": s.get("test/agreement"), "time_s": s["train_time_s"]})
    return pd.DataFrame(rows).set_index("model")


def run_demo(out_dir: Path, seed: int = 0, epochs: int = 10, teacher_epochs: int = 10) -> pd.DataFrame:
    """Run the demo; write ``demo.json`` (table plus full results) and ``report.html`` (both runs) to ``out_dir``."""
    from kdlab.report import build

    results = {name: run_experiment(spec, run_dir=out_dir / name)
               for name, spec in demo_specs(seed, epochs, teacher_epochs).items()}
    table = summary_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"table": json.loads(table.reset_index().to_json(orient="records")),
               "runs": {k: r.to_dict() for k, r in results.items()}}
    (out_dir / "demo.json").write_text(json.dumps(payload, indent=2))
    build([out_dir / name for name in results], out_dir / REPORT, title="kdlab demo: KD vs vanilla student")
    return table
