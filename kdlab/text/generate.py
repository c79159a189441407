"""Continuations sampled from a causal LM: the teacher's for sequence-level KD (Kim & Rush 2016), the student's
own for on-policy distillation (Agarwal et al. 2024, GKD)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def continue_ids(model: nn.Module, prompt: torch.Tensor, new_tokens: int, temperature: float = 1.0,
                 seed: int | None = None) -> torch.Tensor:
    """``prompt`` [B, P] followed by exactly ``new_tokens`` tokens sampled at ``temperature`` from the full
    distribution (no top-k/top-p) with ``transformers``' ``generate``; end-of-text does not stop a row (fixed
    shapes). ``seed`` makes it repeatable without touching the caller's random state."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[prompt.device] if prompt.device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(int(seed))
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                             temperature=max(float(temperature), 1e-6), top_k=0, top_p=1.0,
                             max_new_tokens=int(new_tokens), min_new_tokens=int(new_tokens), eos_token_id=None,
                             pad_token_id=int(model.config.pad_token_id or 0))
    model.train(was_training)
    return out
