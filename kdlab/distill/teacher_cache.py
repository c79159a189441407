"""Teacher outputs computed once per training sample and reused every epoch.

Valid when the teacher is frozen and sees the same input every epoch (no augmentation), so a KD epoch
costs about a student-only epoch.
"""
from __future__ import annotations

import math

import torch

from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.distill.base import Distiller, TeacherOutput


def cache_bytes(distiller: Distiller, n: int) -> int:
    """Bytes the cache of ``n`` samples needs (float32 logits plus tapped features)."""
    per = distiller.num_classes + sum(math.prod(s) for s in getattr(distiller, "teacher_shapes", {}).values())
    return 4 * n * per


class TeacherCache:
    """Logits and tapped features of the teacher for every sample of ``dataset``, indexed by sample."""

    def __init__(self, output: TeacherOutput):
        self.output = output

    @classmethod
    def build(cls, distiller: Distiller, dataset: ArrayDataset, device: torch.device | str,
              batch_size: int = 512) -> TeacherCache:
        parts = [distiller.teacher_forward(x.to(device)) for x, _y, _i in BatchLoader(dataset, batch_size)]
        logits = torch.cat([p.logits.float() for p in parts])
        feats = {k: torch.cat([p.features[k] for p in parts]) for k in (parts[0].features if parts else {})}
        return cls(TeacherOutput(logits, feats))

    def __call__(self, idx: torch.Tensor) -> TeacherOutput:
        return self.output.index(idx.to(self.output.logits.device))
