"""Checks of a valid spec against this machine and its files, made before any run folder, store row or worker
exists: the device is here, the checkpoints a spec names are readable files.

``load_spec`` checks what a spec says; ``preflight`` checks what it needs. ``kdlab train``, ``launch`` (and so
the dashboard's forms and the notebook launchers) and the worker call it.
"""
from __future__ import annotations

from pathlib import Path

from kdlab.distill.trainer import pick_device
from kdlab.errors import ConfigError, Issue, KdlabError
from kdlab.runs.spec import ExperimentSpec, JobSpec
from kdlab.runs.tracking.targets import tracking_issues


def preflight(spec: ExperimentSpec | JobSpec, *, local: bool = True, tracking: bool = True) -> None:
    """Raise one ConfigError listing every need of ``spec`` this machine cannot meet (``local=False``: the run
    goes to another machine, such as a Ray node, so the device is checked there; ``tracking=False``: inside the
    run, where a tracking target's problem is the mirror's to report, not a reason to fail)."""
    issues: list[Issue] = []
    if local:
        try:
            pick_device(spec.device)
        except KdlabError as e:
            issues += e.issues or [Issue("device", str(e))]
    if isinstance(spec, ExperimentSpec):
        for section in ("teacher", "student"):
            model = getattr(spec, section)
            if model is not None and model.checkpoint:
                issues += _checkpoint_issues(Path(model.checkpoint), (section, "checkpoint"))
    if tracking:
        issues += tracking_issues(spec)  # the tracking package is installed, its folder writable
    if issues:
        raise ConfigError(f"the spec {spec.name!r} cannot run here:\n  " + "\n  ".join(map(str, issues)),
                          issues=issues)


def _checkpoint_issues(path: Path, where: tuple[str, ...]) -> list[Issue]:
    if path.is_dir():
        return [Issue(where, f"{path} is a folder; give the checkpoint file (a run's checkpoints/last.pt)")]
    if not path.is_file():
        return [Issue(where, f"{path} does not exist (relative paths start at {Path.cwd()})")]
    return []
