"""The ``neighbours`` job: the nearest real images of a condensation run's synthetic images (pixel or feature
space) and the real class means beside the synthetic set, for the Distilled images viewer.

Its file is ``artifacts/neighbours.npz``: the first synthetic image of each class, its ``k`` nearest real images
and their distances, the real class means and the synthetic set shown; ``read`` returns a ``Neighbours``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlab.condense import CONVNET_PARAMS, SyntheticSet, nearest_real
from kdlab.condense.neighbours import SPACES
from kdlab.errors import ConfigError
from kdlab.jobs.condense import list_snapshots, load_snapshot, load_synthetic
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, kind_of, register_job
from kdlab.runs.spec import load_spec

NEIGHBOURS_FILE = "neighbours.npz"


@dataclass
class Neighbours:
    """What the viewer draws: each class's first synthetic image with its nearest real images, the real class
    means and the synthetic set it came from."""

    synthetic: np.ndarray  # (C, ...) the first synthetic image of each class
    rows: list[str]
    neighbours: np.ndarray  # (C, k, ...) their nearest real images
    distances: np.ndarray  # (C, k)
    means: np.ndarray  # (C, ...) real class means
    set_x: np.ndarray
    set_y: np.ndarray
    classes: list[str]
    space: str
    iteration: int

    def figures(self) -> dict[str, Any]:
        from kdlab.viz.condense import mean_vs_synthetic, neighbours_figure

        c, k = self.neighbours.shape[:2]
        real = self.neighbours.reshape(c * k, *self.neighbours.shape[2:])
        return {"neighbours": neighbours_figure(self.synthetic, real, np.arange(c * k).reshape(c, k),
                                                self.distances, rows=self.rows, space=self.space),
                "means": mean_vs_synthetic(self.means, np.arange(len(self.means)), self.set_x, self.set_y,
                                           self.classes)}


def synthetic_at(run_dir: str | Path, iteration: int) -> SyntheticSet | None:
    """The set at snapshot ``iteration`` (-1 or no such snapshot: the final set, else the newest snapshot)."""
    snaps = list_snapshots(run_dir)
    if iteration in snaps:
        return load_snapshot(run_dir, iteration)
    final = load_synthetic(run_dir)
    return final if final is not None or not snaps else load_snapshot(run_dir, snaps[-1])


@register_job("neighbours")
class NeighboursJob(Job):
    """Nearest real images of a condensation run's synthetic images, and the real class means."""

    params = {
        "run": Param(None, "id of the condensation run", str),
        "iteration": Param(-1, "snapshot to look at (-1: the final set)", int, -1, None),
        "space": Param("pixel", "distance between pixels, or between features of a random ConvNet (DM's view)",
                       str, choices=SPACES),
        "k": Param(5, "neighbours per synthetic image", int, 1, 50),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        if not params["run"]:
            raise ConfigError("params.run: give the id of a condensation run")
        rec = store.get_run(store.resolve(params["run"]))
        if kind_of(rec.spec) != "condense":
            raise ConfigError(f"params.run: run {rec.id} is a {kind_of(rec.spec)} job, not a condensation run")
        return {**params, "run": rec.id}

    def title(self, params: Mapping[str, Any]) -> str:
        return f"neighbours-{params.get('run') or ''}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        from kdlab.runs.experiment import load_splits

        p = ctx.params
        folder = ctx.store.run_dir(p["run"])
        syn = synthetic_at(folder, p["iteration"])
        if syn is None:
            raise ConfigError(f"params.run: run {p['run']} has no synthetic set or snapshot yet")
        real = load_splits(load_spec(ctx.store.get_run(p["run"]).spec)).train
        if real.in_shape != syn.in_shape:
            raise ConfigError(f"real data {real.in_shape} and synthetic images {syn.in_shape} differ in shape")
        ctx.progress(0, 2, f"searching {len(real)} real images ({p['space']} space)")
        first = [int((syn.y == c).nonzero()[0, 0]) for c in range(syn.num_classes) if (syn.y == c).any()]
        embed = None
        if p["space"] == "feature":
            from kdlab.condense.matching import embed as embed_fn
            from kdlab.models import create

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.spec.seed)
                net = create("convnet", syn.num_classes, syn.in_shape, **CONVNET_PARAMS).eval()
            m, s = torch.tensor(syn.mean).view(1, -1, 1, 1), torch.tensor(syn.std).view(1, -1, 1, 1)
            embed = lambda x: embed_fn(net, (x - m) / s)  # noqa: E731
        idx, dist = nearest_real(syn.x[first], real.x, k=min(p["k"], len(real)), embed=embed)
        means = torch.stack([real.x[real.y == c].mean(0) if (real.y == c).any() else torch.zeros(real.in_shape)
                             for c in range(syn.num_classes)])
        tmp = ctx.artifact(NEIGHBOURS_FILE + ".tmp.npz")
        np.savez_compressed(tmp, synthetic=syn.x[first].numpy(), rows=np.array([syn.classes[int(syn.y[i])]
                                                                                   for i in first]),
                            neighbours=real.x[idx].numpy(), distances=dist.numpy(), means=means.numpy(),
                            set_x=syn.x.numpy(), set_y=syn.y.numpy(), classes=np.array(list(syn.classes)),
                            space=np.array(p["space"]), iteration=np.array(p["iteration"]))
        tmp.replace(ctx.artifact(NEIGHBOURS_FILE))
        ctx.progress(2, 2, "done")
        return {"nearest_distance": float(dist[:, 0].mean())}

    def read(self, run_dir: str | Path) -> Neighbours | None:
        path = Path(run_dir) / "artifacts" / NEIGHBOURS_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            return Neighbours(z["synthetic"], [str(r) for r in z["rows"]], z["neighbours"], z["distances"],
                              z["means"], z["set_x"], z["set_y"], [str(c) for c in z["classes"]],
                              str(z["space"]), int(z["iteration"]))
