"""The synthetic set: a few images per class that stand in for a training set.

It is a torch ``Dataset`` yielding ``(x, y, index)`` like ``kdlab.data.ArrayDataset`` (so kdlab's trainer
and loaders take it), saves to / loads from ``.npz`` and exports PNG grids. Images live in the data's pixel
space (nominally [0, 1]); ``mean``/``std`` are the per-channel statistics the method normalised with.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlab.data.base import ArrayDataset, ImageTensors
from kdlab.errors import ConfigError, ShapeError

EXTRA = "extra__"  # prefix of the extras' keys in the .npz


@dataclass
class SyntheticSet(ImageTensors):
    """``x`` (N, C, H, W) float32, hard labels ``y`` (N,), optional ``soft`` label distributions (N, K); ``extras``:
    a method's other arrays (compensators, target representations, ...), saved with the set."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    soft: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x, dtype=torch.float32).detach().cpu()
        self.y = torch.as_tensor(self.y, dtype=torch.int64).cpu()
        if self.x.ndim != 4 or len(self.x) != len(self.y):
            raise ShapeError(f"synthetic set: images must be (N, C, H, W) with N labels, got "
                             f"{tuple(self.x.shape)} and {tuple(self.y.shape)}")
        c = self.x.shape[1]
        self.mean = tuple(float(v) for v in (self.mean or (0.0,) * c))
        self.std = tuple(float(v) for v in (self.std or (1.0,) * c))
        if len(self.mean) != c or len(self.std) != c:
            raise ShapeError(f"synthetic set: mean/std need {c} channel values, got {self.mean} / {self.std}")
        if self.soft is not None:
            self.soft = torch.as_tensor(self.soft, dtype=torch.float32).cpu()
            if self.soft.shape != (len(self.y), len(self.classes)):
                raise ShapeError(f"synthetic set: soft labels must be ({len(self.y)}, {len(self.classes)}), "
                                 f"got {tuple(self.soft.shape)}")

    @property
    def ipc(self) -> int:
        """Images per class (the largest count over classes)."""
        return int(torch.bincount(self.y, minlength=self.num_classes).max()) if len(self.y) else 0

    def targets(self) -> torch.Tensor:
        """What a network trained on the set should predict: the soft labels if any, else the hard ones."""
        return self.soft if self.soft is not None else self.y

    def normalized(self) -> torch.Tensor:
        """Images standardised with the set's per-channel ``mean``/``std``."""
        m = torch.tensor(self.mean).view(1, -1, 1, 1)
        s = torch.tensor(self.std).view(1, -1, 1, 1)
        return (self.x - m) / s

    def by_class(self) -> list[torch.Tensor]:
        """The images of each class, in class order."""
        return [self.x[self.y == k] for k in range(self.num_classes)]

    def to_array_dataset(self, name: str = "synthetic") -> ArrayDataset:
        """The set as a kdlab ``ArrayDataset`` (hard labels)."""
        return ArrayDataset(self.x.clone(), self.y.clone(), name, list(self.classes), "kdlab.condense")

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to ``path`` (.npz, atomically): images, labels, classes, stats and meta (JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"x": self.x.numpy(), "y": self.y.numpy(), "classes": np.asarray(self.classes, dtype=str),
                  "mean": np.asarray(self.mean), "std": np.asarray(self.std),
                  "meta": np.asarray(json.dumps(self.meta, default=str))}
        if self.soft is not None:
            arrays["soft"] = self.soft.numpy()
        arrays.update({EXTRA + k: np.asarray(v) for k, v in self.extras.items()})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SyntheticSet:
        """Read a set written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"synthetic set: {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            return cls(torch.from_numpy(z["x"]), torch.from_numpy(z["y"]), [str(c) for c in z["classes"]],
                       tuple(z["mean"]), tuple(z["std"]),
                       torch.from_numpy(z["soft"]) if "soft" in z.files else None,
                       json.loads(str(z["meta"])) if "meta" in z.files else {},
                       {k[len(EXTRA):]: z[k] for k in z.files if k.startswith(EXTRA)})

    def grid(self, pad: int = 1) -> np.ndarray:
        """A uint8 image (H, W, C) with one row per class and one column per image (clipped to [0, 1])."""
        c, h, w = self.in_shape
        n = max(self.ipc, 1)
        out = np.ones((self.num_classes * (h + pad) + pad, n * (w + pad) + pad, c), dtype=np.float32)
        for k, imgs in enumerate(self.by_class()):
            for j, im in enumerate(imgs):
                y0, x0 = pad + k * (h + pad), pad + j * (w + pad)
                out[y0:y0 + h, x0:x0 + w] = im.clamp(0, 1).permute(1, 2, 0).numpy()
        return (out * 255 + 0.5).astype(np.uint8)

    def save_png(self, path: str | os.PathLike[str], scale: int = 2) -> Path:
        """Export the per-class grid (``grid``) as a PNG, upscaled ``scale`` times (nearest)."""
        from PIL import Image  # lazy: Pillow is optional, needed only for PNG export

        g = self.grid()
        g = g.repeat(scale, 0).repeat(scale, 1)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(path)
        return path
