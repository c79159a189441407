"""The teacher's top-k next-token log-probs for every training block, computed once and kept on disk
(memory-mapped): KD without the teacher's forward pass and without a [tokens x vocabulary] array per step
(the offline-distillation idea of ms-swift's GKD and of many LLM distillation pipelines)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.text.blocks import TokenBlocks
from kdlab.text.losses import TopK
from kdlab.text.models import logits_of

META = "topk.json"


class TopKCache:
    """Read side: ``get(index)`` -> ``TopK`` of the blocks ``index`` ([B, L, k] log-probs and token ids)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.meta = json.loads((folder / META).read_text())
        shape = (self.meta["blocks"], self.meta["block_size"], self.meta["k"])
        self.values = np.lib.format.open_memmap(folder / "values.npy", mode="r")
        self.indices = np.lib.format.open_memmap(folder / "indices.npy", mode="r")
        if self.values.shape != shape or self.indices.shape != shape:
            raise ValueError(f"top-k cache {folder}: arrays {self.values.shape} do not match {shape}")

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    def get(self, index: torch.Tensor) -> TopK:
        i = np.sort(np.asarray(index))  # memmap reads in order
        order = np.argsort(np.argsort(np.asarray(index)))
        v = torch.from_numpy(np.ascontiguousarray(self.values[i][order])).float()
        k = torch.from_numpy(np.ascontiguousarray(self.indices[i][order])).long()
        return TopK(v, k)

    def nbytes(self) -> int:
        return int(self.values.nbytes + self.indices.nbytes)


@torch.no_grad()
def build_topk_cache(teacher: nn.Module, blocks: TokenBlocks, k: int, folder: str | Path, key: str,
                     batch_size: int = 16, device: str = "cpu", progress=None) -> TopKCache:
    """Write the cache for ``blocks`` under ``folder`` (reused when its ``key`` — teacher, blocks, k — matches)."""
    folder = Path(folder)
    meta = {"key": key, "blocks": len(blocks), "block_size": blocks.block_size, "k": int(k)}
    if (folder / META).is_file():
        try:
            if json.loads((folder / META).read_text()) == meta:
                return TopKCache(folder)
        except (ValueError, OSError):
            pass
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)
    shape = (len(blocks), blocks.block_size, int(k))
    values = np.lib.format.open_memmap(folder / "values.npy", mode="w+", dtype=np.float16, shape=shape)
    indices = np.lib.format.open_memmap(folder / "indices.npy", mode="w+", dtype=np.int32, shape=shape)
    teacher.eval()
    for start in range(0, len(blocks), batch_size):
        ids = blocks.ids[start:start + batch_size, :-1].to(device)
        logp = F.log_softmax(logits_of(teacher, ids).float(), -1)
        v, i = logp.topk(int(k), -1)
        values[start:start + len(ids)] = v.cpu().numpy().astype(np.float16)
        indices[start:start + len(ids)] = i.cpu().numpy().astype(np.int32)
        if progress:
            progress(min(start + batch_size, len(blocks)), len(blocks))
    values.flush()
    indices.flush()
    del values, indices
    (folder / META).write_text(json.dumps(meta))  # written last: a cache without it is rebuilt
    return TopKCache(folder)
