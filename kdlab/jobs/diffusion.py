"""The ``diffusion`` job: a diffusion teacher (trained by kdlab and cached, or the user's saved denoiser) distilled
into a few-step student with one of ``kdlab.diffusion``'s methods, then both measured against the number of steps.

Its files, under the run folder's ``artifacts/``: ``diffusion_quality.csv`` (one row per model, sampler and number
of steps: NFE, seconds per sample, then swd / mmd / coverage for 2-D data or fd / accuracy / precision / recall for
images), ``diffusion_samples.npz`` (``teacher_<k>``, ``student_<k>``, ``labels``, ``reference``),
``diffusion_trajectories.npz`` (``teacher``, ``student``: x_t along sampling; ``teacher_t``, ``student_t``),
``diffusion_snapshots.npz`` (``step``, ``samples`` from fixed noise, ``metric``), ``diffusion_neighbours.npz``
(images: student samples and their nearest training images), ``diffusion_summary.json``; the student as
``student/`` (config.json + model.safetensors) and ``checkpoint/state.pt`` (the job resumes from it).
``read``/``load_diffusion_artifacts`` are the one reader (``DiffusionArtifacts``).

A tiny run (about 10 s on a laptop): ``kdlab.submit("diffusion", data="eight_gaussians", n_train=2000,
teacher_width=64, teacher_steps=100, steps=6, snapshot_every=3, n_eval=100, teacher_eval_steps=[1, 8],
student_eval_steps=[1, 2])``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdlab.errors import CheckpointError, ConfigError
from kdlab.jobs.optional import extra_module
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

QUALITY_FILE, SAMPLES_FILE, TRAJ_FILE = "diffusion_quality.csv", "diffusion_samples.npz", "diffusion_trajectories.npz"
SNAP_FILE, NEIGH_FILE, SUMMARY_FILE = "diffusion_snapshots.npz", "diffusion_neighbours.npz", "diffusion_summary.json"
DATASETS = ("eight_gaussians", "two_moons", "swiss_roll", "digits", "mnist5k")
LOWER_IS_BETTER = ("swd", "mmd", "fd")


@dataclass
class DiffusionArtifacts:
    """What a ``diffusion`` run wrote (parts missing until written stay None/empty)."""

    quality: pd.DataFrame | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    trajectories: dict[str, np.ndarray] = field(default_factory=dict)
    snapshots: dict[str, np.ndarray] = field(default_factory=dict)
    neighbours: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def load_diffusion_artifacts(run_dir: str | Path) -> DiffusionArtifacts:
    folder = Path(run_dir) / "artifacts"
    out = DiffusionArtifacts()
    if (folder / QUALITY_FILE).is_file():
        out.quality = pd.read_csv(folder / QUALITY_FILE)
    for attr, name in (("samples", SAMPLES_FILE), ("trajectories", TRAJ_FILE), ("snapshots", SNAP_FILE),
                       ("neighbours", NEIGH_FILE)):
        if (folder / name).is_file():
            with np.load(folder / name, allow_pickle=False) as z:
                setattr(out, attr, {k: z[k] for k in z.files})
    if (folder / SUMMARY_FILE).is_file():
        out.summary = json.loads((folder / SUMMARY_FILE).read_text())
    return out


def diffusion_module(name: str = "kdlab.diffusion") -> Any:
    """``kdlab.diffusion`` (or a module that needs it), or ConfigError saying how to install the extra."""
    return extra_module(name, "diffusion", "diffusion")


def _steps_list(doc: str, default: list[int]) -> Param:
    return Param(default, doc + " (each in [1, 1000])", list)


@register_job("diffusion")
class DiffusionJob(Job):
    """Distill a diffusion teacher into a few-step student; quality against the number of steps."""

    resumable = True
    params = {
        "data": Param("eight_gaussians", "distribution: 2-D toys or digit images", str, choices=DATASETS),
        "n_train": Param(0, "training samples (0: 20,000 points for 2-D toys, the whole train split of images)",
                         int, 0, 1_000_000),
        "conditional": Param(True, "use the data's labels (class-conditional teacher and students, classifier-free "
                                   "guidance); false: unconditional", bool),
        "teacher_width": Param(0, "teacher's MLP width or UNet base channels (0: 256 / 16)", int, 0, 4096),
        "teacher_steps": Param(0, "teacher training steps (0: 4,000; 2,000 on mnist5k; cached per configuration)",
                               int, 0, 10_000_000),
        "teacher_path": Param("", "a saved kdlab denoiser folder (config.json + model.safetensors) used as the "
                                  "teacher instead of training one", str),
        "method": Param("progressive", "diffusion distillation method (kdlab.diffusion.DIFFUSION_METHODS)", str),
        "method_params": Param({}, "the method's parameters", dict),
        "student_width": Param(0, "student width (0: a copy of the teacher, initialised from it)", int, 0, 4096),
        "steps": Param(1000, "distillation steps", int, 1, 10_000_000),
        "batch_size": Param(0, "samples per step (0: 256 for 2-D, 64 for images)", int, 0, 65_536),
        "lr": Param(0.0, "learning rate (0: 1e-3 for 2-D MLPs, 2e-4 for UNets)", float, 0.0, 1.0),
        "guidance": Param(1.0, "classifier-free guidance scale of the teacher (1: none; [0, 20])", float, 0.0, 20.0),
        "sampler": Param("ddim", "the teacher's sampler (diffusers scheduler): ddim, ddpm, euler, dpm", str,
                         choices=("ddim", "ddpm", "euler", "dpm")),
        "teacher_eval_steps": _steps_list("the teacher's numbers of sampling steps measured", [1, 4, 50]),
        "student_eval_steps": _steps_list("the student's numbers of sampling steps measured", [1, 2, 4]),
        "n_eval": Param(0, "samples per quality measurement (0: 2,000 for 2-D, 1,000 for images)", int, 0,
                        1_000_000),
        "snapshot_every": Param(0, "steps between snapshots of the student (0: 10 snapshots)", int, 0, 10_000_000),
        "snapshot_steps": Param(1, "sampling steps of the snapshots' samples", int, 1, 1000),
        "checkpoint_every": Param(200, "steps between checkpoints (a killed run resumes from the last)", int, 1,
                                  10_000_000),
        "seed": Param(0, "seed of the student's training and of the sampling noise", int, 0, 2**31 - 1),
        "teacher_seed": Param(0, "seed of the teacher's training (the same teacher serves several student seeds)",
                              int, 0, 2**31 - 1),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        diffusion = diffusion_module()
        p = dict(params)
        method = diffusion.DIFFUSION_METHODS.entry(p["method"], where="params.method").obj
        p["method_params"] = diffusion.DIFFUSION_METHODS.validate(p["method"], p["method_params"],
                                                                  where="params.method_params")
        facts = diffusion.DIFFUSION_DATA.entry(p["data"]).tags
        shape, classes = tuple(facts["shape"]), int(facts["classes"])
        if method.needs_labels and not (classes and p["conditional"]):
            raise ConfigError.at("params.method", f"{p['method']!r} needs class labels and "
                                 f"{p['data']!r} {'has none' if not classes else 'is used unconditionally'}")
        classes = classes if p["conditional"] else 0
        for key in ("teacher_eval_steps", "student_eval_steps"):
            if not p[key]:
                raise ConfigError.at(f"params.{key}", "give at least one number of sampling steps, e.g. [1, 4]")
            for i, k in enumerate(p[key]):
                diffusion.schedule.check_steps(k, where=f"params.{key}[{i}]")
        teacher_cfg = {"arch": "mlp" if len(shape) == 1 else "unet", "num_classes": classes}
        if p["teacher_path"]:
            teacher_cfg = _check_teacher_path(diffusion, p["teacher_path"], shape, classes, p["data"])
        if p["student_width"]:
            _check_student(diffusion, p, shape, classes, teacher_cfg)
        return p

    def title(self, params: Mapping[str, Any]) -> str:
        return f"diffusion-{params.get('method', '')}-{params.get('data', '')}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        return diffusion_module("kdlab.jobs.diffusion_run").run(ctx)

    def read(self, run_dir: str | Path) -> DiffusionArtifacts | None:
        art = load_diffusion_artifacts(run_dir)
        return art if art.quality is not None or art.snapshots else None


def _check_teacher_path(diffusion: Any, path: str, shape: tuple, classes: int, data: str) -> dict[str, Any]:
    """The saved teacher's model config; ConfigError when it is no denoiser or one of another distribution."""
    try:
        cfg = diffusion.models.read_denoiser_config(Path(path).expanduser())["model"]
    except CheckpointError as e:
        raise ConfigError.at("params.teacher_path", str(e)) from e
    got = tuple(cfg.get("sample_shape") or [cfg.get("dim")])
    if got != shape or int(cfg.get("num_classes", -1)) != classes:
        raise ConfigError.at("params.teacher_path", f"{path!r} is a teacher of another model: it makes samples of "
                             f"shape {list(got)} with {cfg.get('num_classes')} classes, and data {data!r} has "
                             f"shape {list(shape)} with {classes} classes")
    return cfg


def _check_student(diffusion: Any, p: Mapping[str, Any], shape: tuple, classes: int, teacher_cfg: Mapping) -> None:
    """The student's architecture against the teacher's output, before any training (ShapeError -> ConfigError)."""
    from kdlab.errors import ShapeError

    teacher = diffusion.models.create_denoiser(shape, classes, arch=teacher_cfg["arch"])
    try:
        student = diffusion.models.create_denoiser(shape, classes, arch=teacher_cfg["arch"], width=p["student_width"])
        diffusion.models.check_same_output(teacher, student, where="params.student_width")
    except ShapeError as e:
        raise ConfigError.at("params.student_width", str(e)) from e
