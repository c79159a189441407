"""kdlab: a knowledge-distillation lab for PyTorch (teacher-student training and what was transferred)."""
from __future__ import annotations

__version__ = "0.1.0"

from kdlab import data, distill, models, transfer  # noqa: E402,F401  (transfer registers "zoo:" models)
from kdlab.distill import create_distiller, list_methods, register_method  # noqa: E402
from kdlab.distill.trainer import Callback, TrainConfig, Trainer  # noqa: E402
from kdlab.errors import (  # noqa: E402
                          CheckpointError,
                          ConfigError,
                          KdlabError,
                          NonFiniteLossError,
                          ShapeError,
                          UnknownNameError,
)
from kdlab.models import create, list_models, register_model  # noqa: E402
from kdlab.models.taps import FeatureTaps  # noqa: E402
from kdlab.runs.background import RunHandle, launch, submit  # noqa: E402
from kdlab.runs.experiment import run_experiment  # noqa: E402
from kdlab.runs.spec import ExperimentSpec, load_spec  # noqa: E402
from kdlab.runs.store import open_store  # noqa: E402
from kdlab.runs.tracking import export_runs as export_runs  # noqa: E402  (re-export)
from kdlab.sweeps import sweep  # noqa: E402

__all__ = [
    "Callback", "CheckpointError", "ConfigError", "ExperimentSpec", "FeatureTaps", "KdlabError",
    "NonFiniteLossError", "ShapeError", "TrainConfig", "Trainer", "UnknownNameError", "create",
    "create_distiller", "data", "distill", "list_methods", "list_models", "load_spec", "models",
    "register_method", "register_model", "run_experiment", "launch", "submit", "open_store", "RunHandle", "sweep",
]
