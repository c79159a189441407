"""Mirroring kdlab runs to MLflow and TensorBoard: ``export_runs`` (``kdlab export``) copies stored runs, and a
spec's ``tracking:`` section makes the worker mirror its run live (``LiveMirror``); both use one ``Mirror``.

Needs ``pip install 'kdlab[tracking]'`` (mlflow-skinny, tensorboard); importing this package does not.
"""
from __future__ import annotations

from kdlab.runs.tracking.mirror import Exported, LiveMirror, Mirror, export_runs, flatten, start_live_mirror
from kdlab.runs.tracking.targets import TARGETS, tracking_issues

__all__ = ["TARGETS", "Exported", "LiveMirror", "Mirror", "export_runs", "flatten", "start_live_mirror",
           "tracking_issues"]
