"""How a ``diffusion`` run runs (imported when one starts, so ``kdlab.jobs`` loads without ``diffusers``): the
data, the cached teacher, the method's training with snapshots, checkpoints and telemetry, then quality against
the number of steps and the artifacts ``kdlab.jobs.diffusion`` reads."""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kdlab.diffusion import (
    NoiseSchedule,
    Samples,
    cached_teacher,
    create_denoiser,
    create_diffusion_method,
    load_denoiser,
    load_diffusion_data,
    sample_teacher,
    teacher_config,
)
from kdlab.diffusion.data import DiffusionData
from kdlab.diffusion.judge import image_quality, judge_for, toy_quality
from kdlab.jobs.diffusion import NEIGH_FILE, QUALITY_FILE, SAMPLES_FILE, SNAP_FILE, SUMMARY_FILE, TRAJ_FILE
from kdlab.runs.job import JobContext

KEEP_POINTS, KEEP_IMAGES = 1000, 64  # samples kept per model and number of steps for the viewer


def defaults(data: DiffusionData, p: dict[str, Any]) -> dict[str, Any]:
    """The 0-means-default parameters resolved for this data (2-D MLP or image UNet)."""
    img = data.is_image
    return {"batch_size": p["batch_size"] or (64 if img else 256), "lr": p["lr"] or (2e-4 if img else 1e-3),
            "n_eval": p["n_eval"] or (1000 if img else 2000),
            "snapshot_every": p["snapshot_every"] or max(1, p["steps"] // 10)}


def run(ctx: JobContext) -> dict[str, float]:
    p = ctx.params
    device = ctx.device
    ctx.progress(0, 1, "loading the data")
    labelled = load_diffusion_data(p["data"], **({"n_train": p["n_train"]} if p["n_train"] else {}))
    data = labelled if p["conditional"] else unconditional(labelled)
    d = defaults(data, p)
    schedule = NoiseSchedule()
    teacher, t_meta = _teacher(ctx, p, data)
    student = (create_denoiser(data.sample_shape, data.num_classes, arch=teacher.config["arch"],
                               width=p["student_width"]) if p["student_width"] else None)
    method = create_diffusion_method(p["method"], p["method_params"], teacher, schedule, data, where="params.method",
                                     student=student, seed=p["seed"], device=device, guidance=p["guidance"],
                                     lr=d["lr"], batch_size=d["batch_size"], total_steps=p["steps"])
    judge = judge_for(data.name) if data.is_image else None
    quality = _measure(labelled, judge)
    snaps = _Snapshots(data, p["seed"], device, p["snapshot_steps"])
    state_path = ctx.run_dir / "checkpoint" / "state.pt"
    g = torch.Generator().manual_seed(p["seed"] + 7919)  # the training batches
    seconds = _resume(ctx, state_path, method, snaps, g)
    t0 = time.perf_counter()
    while method.step < p["steps"]:
        ctx.check_cancel()
        x0, y = _batch(data, d["batch_size"], g, device, method.data_free)
        terms = method.train_step(x0, y)  # counts method.step
        ctx.metrics(method.step, {f"loss/{k}": float(v) for k, v in terms.items()})
        ctx.progress(method.step, p["steps"], "distilling")
        if method.step % d["snapshot_every"] == 0 or method.step == p["steps"]:
            value = snaps.take(method, method.step, quality)
            ctx.metrics(method.step, {f"eval/{snaps.metric}": value}, kind="eval")
        if method.step % p["checkpoint_every"] == 0 or method.step == p["steps"]:
            _save_state(state_path, method, snaps, g, seconds + time.perf_counter() - t0)
    seconds += time.perf_counter() - t0
    ctx.progress(p["steps"], p["steps"], "measuring quality against the number of steps")
    rows, kept, speed = _evaluate(ctx, p, d, data, teacher, method, quality)
    art = ctx.artifact
    pd.DataFrame(rows).to_csv(art(QUALITY_FILE), index=False)
    np.savez_compressed(art(SAMPLES_FILE), **kept)
    np.savez_compressed(art(TRAJ_FILE), **_trajectories(p, data, teacher, method, device))
    np.savez_compressed(art(SNAP_FILE), **snaps.arrays())
    if data.is_image:
        np.savez_compressed(art(NEIGH_FILE), **_neighbours(kept[f"student_{min(p['student_eval_steps'])}"], data))
    method.save_student(ctx.run_dir / "student")
    summary = {"data": data.name, "is_image": data.is_image, "sample_shape": list(data.sample_shape),
               "num_classes": data.num_classes, "method": p["method"], "method_params": method.hp,
               "cite": method.cite, "simplification": method.simplification, "kind": method.kind,
               "data_free": method.data_free, "teacher": t_meta, "student_params": method.trainable_params(),
               "distill_seconds": seconds, "samples_per_second": speed, "guidance": p["guidance"],
               "sampler": p["sampler"], "seed": p["seed"], "metric": snaps.metric,
               "conditional": bool(data.num_classes), "snapshot_steps": p["snapshot_steps"], **d}
    art(SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=str))
    student_rows = [r for r in rows if r["who"] == "student"]
    return {f"student_{r['steps']}/{snaps.metric}": float(r[snaps.metric]) for r in student_rows} | {
        "distill_seconds": seconds}


def unconditional(data: DiffusionData) -> DiffusionData:
    """The same samples without their labels (the metrics keep the labelled data for mode coverage)."""
    return dataclasses.replace(data, train_labels=None, test_labels=None, num_classes=0)


def _teacher(ctx: JobContext, p: dict[str, Any], data: DiffusionData) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The user's saved teacher, or kdlab's (trained once per configuration and cached)."""
    if p["teacher_path"]:
        net = load_denoiser(Path(p["teacher_path"]).expanduser()).to(ctx.device).eval().requires_grad_(False)
        return net, {"source": "path", "path": p["teacher_path"], "arch": net.config["arch"],
                     "params": sum(q.numel() for q in net.parameters())}
    cfg = teacher_config(data, seed=p["teacher_seed"], width=p["teacher_width"], steps=p["teacher_steps"] or None)

    def progress(step: int, total: int, loss: float) -> None:
        ctx.progress(step, total, "training the teacher (cached for later runs)")
        if step % 50 == 0:
            ctx.metrics(step, {"teacher/loss": loss}, kind="teacher")

    net, meta = cached_teacher(data, cfg, device=ctx.device, progress=progress)
    return net, {**meta, "arch": cfg["arch"], "steps": cfg["steps"]}


def _batch(data: DiffusionData, n: int, g: torch.Generator, device: str, data_free: bool
           ) -> tuple[Tensor | None, Tensor | None]:
    """A training batch (data-free methods get only labels, drawn like the data's)."""
    idx = torch.randint(0, len(data.train), (n,), generator=g)
    y = data.train_labels[idx].to(device) if data.num_classes else None
    return (None if data_free else data.train[idx].to(device)), y


def _measure(data: DiffusionData, judge: Any) -> Callable[[Tensor, Tensor | None], dict[str, float]]:
    """Quality of samples against the data: 2-D against the test split, images in the judge's feature space
    against the training split (as FID is measured against a training set)."""
    if data.is_image:
        return lambda x, y: image_quality(judge, x, data.train, y)
    return lambda x, y: toy_quality(x, data.test, data.test_labels)


def eval_labels(data: DiffusionData, n: int, g: torch.Generator) -> Tensor | None:
    """Labels of conditional samples: the data's classes in equal numbers (None for unconditional data)."""
    if not data.num_classes:
        return None
    return torch.arange(n) % data.num_classes


def _chunks(fn: Callable[[Tensor, Tensor | None], Samples], z: Tensor, y: Tensor | None, size: int) -> Samples:
    """``fn`` on chunks of the batch (bounded memory); NFE is that of one chunk."""
    parts = [fn(z[i:i + size], None if y is None else y[i:i + size]) for i in range(0, len(z), size)]
    return Samples(torch.cat([s.x for s in parts]), parts[0].nfe)


def _evaluate(ctx: JobContext, p: dict[str, Any], d: dict[str, Any], data: DiffusionData, teacher, method,
              quality) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], dict[str, float]]:
    """Teacher and student quality at each number of steps (same noise and labels), samples kept, speed."""
    device, n = ctx.device, d["n_eval"]
    g = torch.Generator().manual_seed(p["seed"] + 1)
    z = torch.randn(n, *data.sample_shape, generator=g).to(device)
    y = eval_labels(data, n, g)
    y = None if y is None else y.to(device)
    keep = KEEP_IMAGES if data.is_image else KEEP_POINTS
    size = 250 if data.is_image else n
    rows, kept, speed = [], {}, {}
    runs = [("teacher", k) for k in sorted(p["teacher_eval_steps"])] + [("student", k) for k in
                                                                        sorted(p["student_eval_steps"])]
    for i, (who, k) in enumerate(runs):
        ctx.check_cancel()
        ctx.progress(i, len(runs), f"sampling the {who} at {k} step{'s' * (k > 1)}")
        gen = torch.Generator(device=device).manual_seed(p["seed"] + 2)
        if who == "teacher":
            fn = lambda zz, yy, k=k, gen=gen: sample_teacher(teacher, zz, yy, k, p["sampler"],  # noqa: E731
                                                             p["guidance"], gen)
        else:
            fn = lambda zz, yy, k=k, gen=gen: method.generate(zz, yy, k, p["guidance"], gen)  # noqa: E731
        start = time.perf_counter()
        s = _chunks(fn, z, y, size)
        took = time.perf_counter() - start
        x = s.x.float().cpu()
        rows.append({"who": who, "sampler": p["sampler"] if who == "teacher" else method.kind, "steps": k,
                     "nfe": s.nfe, "s_per_sample": took / n, **quality(x, None if y is None else y.cpu())})
        kept[f"{who}_{k}"] = x[:keep].numpy()
        speed[f"{who}_{k}"] = n / took
    kept["labels"] = (y[:keep].cpu().numpy() if y is not None else np.full(min(n, keep), -1))
    ref = data.test if not data.is_image else data.train
    kept["reference"] = ref[:keep * (1 if data.is_image else 2)].numpy()
    return rows, kept, speed


@torch.no_grad()
def _trajectories(p: dict[str, Any], data: DiffusionData, teacher, method, device: str) -> dict[str, np.ndarray]:
    """x_t along the teacher's longest sampling and the student's most-step sampling, from the same noise."""
    n = 8 if data.is_image else 300
    g = torch.Generator().manual_seed(p["seed"] + 3)
    z = torch.randn(n, *data.sample_shape, generator=g).to(device)
    y = eval_labels(data, n, g)
    y = None if y is None else y.to(device)
    t_steps, s_steps = max(p["teacher_eval_steps"]), max(p["student_eval_steps"])
    gen = torch.Generator(device=device).manual_seed(p["seed"] + 4)
    ts = sample_teacher(teacher, z, y, t_steps, p["sampler"], p["guidance"], gen, trajectory=True)
    ss = method.generate(z, y, s_steps, p["guidance"], gen, trajectory=True)
    stack = lambda s: torch.stack(s.trajectory).float().cpu().numpy()  # noqa: E731
    return {"teacher": stack(ts), "student": stack(ss), "teacher_t": np.array([*ts.timesteps, -1.0]),
            "student_t": np.array([*ss.timesteps, -1.0]),
            "labels": y.cpu().numpy() if y is not None else np.full(n, -1)}


def _neighbours(samples: np.ndarray, data: DiffusionData, m: int = 8, k: int = 3) -> dict[str, np.ndarray]:
    """The ``k`` nearest training images (pixel L2) of ``m`` student samples: a memorisation check."""
    x = torch.as_tensor(samples[:m]).flatten(1).double()
    train = data.train.flatten(1).double()
    dist, idx = torch.cdist(x, train).topk(k, largest=False)
    return {"samples": samples[:m], "neighbours": data.train[idx].numpy(), "distances": dist.numpy()}


class _Snapshots:
    """The student's samples from fixed noise during distillation, with their quality (for the scrubber)."""

    def __init__(self, data: DiffusionData, seed: int, device: str, steps: int):
        self.data, self.metric, self.sampling_steps = data, "fd" if data.is_image else "swd", steps
        n = 256 if data.is_image else 1000
        g = torch.Generator().manual_seed(seed + 5)
        self.z = torch.randn(n, *data.sample_shape, generator=g).to(device)
        y = eval_labels(data, n, g)
        self.y = None if y is None else y.to(device)
        self.keep = 16 if data.is_image else n
        self.steps: list[int] = []
        self.samples: list[Tensor] = []
        self.values: list[float] = []

    def take(self, method, step: int, quality) -> float:
        gen = torch.Generator(device=self.z.device).manual_seed(0)
        x = method.generate(self.z, self.y, self.sampling_steps, method.guidance, gen).x.float().cpu()
        value = float(quality(x, None if self.y is None else self.y.cpu())[self.metric])
        self.steps.append(step)
        self.samples.append(x[:self.keep])
        self.values.append(value)
        return value

    def state(self) -> dict[str, Any]:
        return {"steps": torch.tensor(self.steps, dtype=torch.long), "values": torch.tensor(self.values),
                "samples": torch.stack(self.samples) if self.samples else torch.zeros(0)}

    def load(self, state: dict[str, Any]) -> None:
        self.steps, self.values = state["steps"].tolist(), state["values"].tolist()
        self.samples = list(state["samples"]) if len(self.steps) else []

    def arrays(self) -> dict[str, np.ndarray]:
        s = self.state()
        return {"step": s["steps"].numpy(), "samples": s["samples"].numpy(), "metric": s["values"].numpy(),
                "labels": (self.y[:self.keep].cpu().numpy() if self.y is not None else np.full(self.keep, -1))}


def _save_state(path: Path, method, snaps: _Snapshots, g: torch.Generator, seconds: float) -> None:
    """The method's full state, the batch generator and the snapshots so far, written atomically (a kill keeps
    the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"method": method.state_dict(), "snapshots": snaps.state(), "batches": g.get_state(),
                "seconds": seconds}, tmp)
    tmp.replace(path)


def _resume(ctx: JobContext, path: Path, method, snaps: _Snapshots, g: torch.Generator) -> float:
    """Continue from the last checkpoint when resuming (metric rows written after it are dropped, so none is
    doubled); returns the distillation seconds already spent."""
    if not (ctx.resume and path.is_file()):
        if ctx.resume and ctx.recording:
            ctx.store.truncate_metrics(ctx.run_id, -1)
            ctx.log("no checkpoint to resume from: starting over", "warning")
        return 0.0
    state = torch.load(path, map_location="cpu", weights_only=True)
    method.load_state_dict(state["method"])
    snaps.load(state["snapshots"])
    g.set_state(state["batches"])
    if ctx.recording:
        dropped = ctx.store.truncate_metrics(ctx.run_id, method.step)
        ctx.log(f"resuming after step {method.step}; dropped {dropped} metric rows written after it")
    return float(state["seconds"])
