"""The judge: kdlab's own small ConvNet classifier, trained once per dataset, whose penultimate features are the
feature space of the image metrics (Fréchet distance, k-NN precision/recall) and whose predictions score
class-conditional samples.

The Fréchet distance computed here is NOT the Inception FID: Inception needs a weights download and 299x299 RGB
natural images, while kdlab's digits are tiny grey images and nothing is downloaded at run time. The numbers are
therefore not comparable with published FIDs, only between kdlab runs that use the same judge (same dataset and
``JUDGE_CONFIGS`` entry, recorded in ``Judge.config``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdlab.diffusion.metrics import (
    class_accuracy,
    frechet_distance,
    knn_precision_recall,
    mmd,
    mode_coverage,
    sliced_wasserstein,
)
from kdlab.errors import CheckpointError, ConfigError, ShapeError
from kdlab.paths import cache_dir, file_lock

#: bump when the training recipe changes, so old cached judges are not reused
JUDGE_VERSION = 1

#: one small recipe per image dataset: ConvNet size and a few seeded epochs of Adam (CPU: ~1 s for digits,
#: ~10 s for mnist5k on 2 cores; test accuracy ~0.99 and ~0.97)
JUDGE_CONFIGS: dict[str, dict[str, Any]] = {
    "digits": {"width": 16, "depth": 2, "epochs": 12, "batch_size": 64, "lr": 1e-2, "seed": 0},
    "mnist5k": {"width": 64, "depth": 4, "epochs": 4, "batch_size": 64, "lr": 2e-3, "seed": 0},  # 64-d features
}

_MEMO: dict[str, Judge] = {}


@dataclass
class Judge:
    """A trained ConvNet classifier used as a feature space; takes images in [-1, 1] (diffusion data space)."""

    data_name: str
    net: nn.Module
    accuracy: float  # test-split accuracy of the classifier (how far to trust its features and predictions)
    config: dict[str, Any] = field(default_factory=dict)
    source: str = "trained"  # "cache" | "trained"
    batch_size: int = 512

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["in_shape"])

    def _batches(self, x: torch.Tensor):
        x = torch.as_tensor(x)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(f"judge {self.data_name}: images must be (N, {', '.join(map(str, self.in_shape))}), "
                             f"got {tuple(x.shape)}")
        dev = next(self.net.parameters()).device
        self.net.eval()
        for s in range(0, len(x), self.batch_size):
            yield ((x[s:s + self.batch_size].to(dev, torch.float32) + 1.0) / 2.0)  # [-1, 1] -> the judge's [0, 1]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (ConvNet ``embed``), (N, D) float32 on the CPU, of images in [-1, 1]."""
        out = [self.net.embed(b).cpu() for b in self._batches(x)]
        return torch.cat(out) if out else torch.zeros(0, self.net.classifier.in_features)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10), float32 on the CPU, of images in [-1, 1]."""
        out = [self.net(b).cpu() for b in self._batches(x)]
        return torch.cat(out) if out else torch.zeros(0, self.net.classifier.out_features)

    def to(self, device: str | torch.device) -> Judge:
        """Move the classifier (in place) and return self."""
        self.net.to(device)
        return self


def _judge_config(data_name: str) -> dict[str, Any]:
    if data_name not in JUDGE_CONFIGS:
        raise ConfigError.at("data", f"no judge for {data_name!r}: the image metrics need one of "
                                     f"{sorted(JUDGE_CONFIGS)}", choices=sorted(JUDGE_CONFIGS))
    return {"data": data_name, "version": JUDGE_VERSION, **JUDGE_CONFIGS[data_name]}


def _key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _build(config: dict[str, Any], in_shape: tuple[int, int, int]) -> nn.Module:
    from kdlab.models import create

    return create("convnet", num_classes=10, in_shape=in_shape, width=config["width"], depth=config["depth"])


def train_judge(data_name: str) -> Judge:
    """Train the judge for ``data_name`` from scratch (seeded, deterministic on the CPU); no caching."""
    from kdlab.data import load

    config = _judge_config(data_name)
    train, test = load(data_name, split="train"), load(data_name, split="test")
    in_shape = tuple(train.x.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        net = _build(config, in_shape)
    gen = torch.Generator().manual_seed(config["seed"])
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
    steps_per_epoch = math.ceil(len(train.x) / config["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config["lr"],
                                                total_steps=config["epochs"] * steps_per_epoch)
    net.train()
    for _ in range(config["epochs"]):
        order = torch.randperm(len(train.x), generator=gen)
        for s in range(0, len(order), config["batch_size"]):
            idx = order[s:s + config["batch_size"]]
            loss = nn.functional.cross_entropy(net(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        acc = class_accuracy(torch.cat([net(test.x[s:s + 512]) for s in range(0, len(test.x), 512)]), test.y)
    return Judge(data_name, net, acc, {**config, "in_shape": list(in_shape)}, "trained")


def _save(judge: Judge, folder: os.PathLike) -> None:
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in judge.net.state_dict().items()},
              os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "judge.json"), "w") as fh:
        json.dump({"accuracy": judge.accuracy, "config": judge.config}, fh)


def _load(data_name: str, folder: os.PathLike) -> Judge:
    from safetensors.torch import load_file

    try:
        with open(os.path.join(folder, "judge.json")) as fh:
            meta = json.load(fh)
        config = meta["config"]
        net = _build(config, tuple(config["in_shape"]))
        net.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"judge cache {folder}: unreadable ({exc})") from exc
    net.eval()
    return Judge(data_name, net, float(meta["accuracy"]), config, "cache")


def judge_for(data_name: str) -> Judge:
    """The judge of ``data_name`` ("digits" | "mnist5k"): from memory, else from the disk cache
    (``cache_dir("diffusion", "judges", key)``), else trained once under a file lock and cached."""
    config = _judge_config(data_name)
    key = f"{data_name}-{_key(config)}"
    if key in _MEMO:
        return _MEMO[key]
    root = cache_dir("diffusion", "judges")
    folder = root / key
    with file_lock(root / f"{key}.lock"):
        judge = None
        if (folder / "judge.json").is_file():
            try:
                judge = _load(data_name, folder)
            except CheckpointError:
                shutil.rmtree(folder, ignore_errors=True)  # a damaged entry is rebuilt
        if judge is None:
            judge = train_judge(data_name)
            tmp = root / f"{key}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            _save(judge, tmp)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
    _MEMO[key] = judge
    return judge


def image_quality(judge: Judge, samples: torch.Tensor, reference: torch.Tensor,
                  labels: torch.Tensor | None = None, k: int = 3) -> dict[str, float]:
    """Image metrics in the judge's feature space: ``fd`` (Fréchet distance, NOT the Inception FID; lower is
    better), ``accuracy`` (judge agrees with the requested ``labels``; NaN without labels), ``precision`` and
    ``recall`` (k-NN manifolds, Kynkaanniemi et al. 2019). ``samples`` and ``reference`` are in [-1, 1]."""
    fs, fr = judge.features(samples), judge.features(reference)
    precision, recall = knn_precision_recall(fr, fs, k=k)
    acc = float("nan") if labels is None else class_accuracy(judge.logits(samples), labels)
    return {"fd": frechet_distance(fs, fr), "accuracy": acc, "precision": precision, "recall": recall}


def toy_quality(samples: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor | None = None,
                seed: int = 0) -> dict[str, float]:
    """2-D metrics: ``swd`` (sliced W2), ``mmd`` (unbiased squared, RBF mixture; against the first
    ``MMD_REFERENCE`` reference points, an i.i.d. draw: its cost is quadratic), ``coverage`` (share of the labelled
    modes reached; NaN without labels)."""
    coverage = float("nan") if reference_labels is None else mode_coverage(samples, reference, reference_labels)
    return {"swd": sliced_wasserstein(samples, reference, seed=seed), "mmd": mmd(samples, reference[:MMD_REFERENCE]),
            "coverage": coverage}


MMD_REFERENCE = 2000
