"""Teacher outputs kept on disk by content: the same teacher weights on the same images (with the same tapped
layers) load instead of being recomputed. Every trial of a sweep, and every re-run, shares its teacher's outputs
(with a ConvNet teacher on mnist5k that is ~12 s of teacher passes per run on one thread).

Files are ``<folder>/<key>.pt``, the key a hash of the teacher's class and weights, the images and the layers;
they are written atomically and read with ``weights_only=True``. Delete the folder to clear it.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from kdlab.distill.base import TeacherOutput
from kdlab.paths import digest_tensor

LIMIT_MB = 256.0  # outputs larger than this are recomputed rather than written


def output_key(model: nn.Module, x: torch.Tensor, layers: Sequence[str] = ()) -> str:
    """A content key: the model's class and state (weights and buffers), the inputs ``x`` and the tapped layers."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}|{','.join(layers)}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        digest_tensor(h, t)
    digest_tensor(h, x)
    return h.hexdigest()


class OutputFiles:
    """A folder of teacher outputs by content key (``get``/``put``; ``memo`` computes on a miss)."""

    def __init__(self, folder: str | os.PathLike[str], limit_mb: float = LIMIT_MB):
        self.folder, self.limit_mb = Path(folder), limit_mb

    def get(self, key: str) -> TeacherOutput | None:
        path = self.folder / f"{key}.pt"
        if not path.is_file():
            return None
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return TeacherOutput(d["logits"], dict(d["features"]))
        except Exception:  # a damaged entry is recomputed (and rewritten)
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, out: TeacherOutput) -> None:
        size = (out.logits.numel() * out.logits.element_size()
                + sum(v.numel() * v.element_size() for v in out.features.values()))
        if size / 2**20 > self.limit_mb:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.pt"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"logits": out.logits.cpu(), "features": {k: v.cpu() for k, v in out.features.items()}}, tmp)
        os.replace(tmp, path)

    def memo(self, model: nn.Module, x: torch.Tensor, layers: Sequence[str],
             compute: Callable[[], TeacherOutput]) -> TeacherOutput:
        """The stored outputs of ``model`` on ``x``, or ``compute()`` stored for next time."""
        key = output_key(model, x, layers)
        found = self.get(key)
        if found is not None:
            return found
        out = compute()
        self.put(key, out)
        return out
