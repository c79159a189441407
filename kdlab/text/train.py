"""The LM training loop: a causal LM trained on token blocks with its own cross-entropy and, given a teacher and
a method, the method's named distillation terms (per-term telemetry as for image runs).

What a step trains on depends on the method's mode: corpus blocks (token-level KD, TAID, DDK's mixture,
cached top-k teacher logits), teacher generations (sequence-level KD), the student's own continuations for a
fraction ``lmbda`` of the steps (on-policy, GKD), or the same text under two tokenizers (ALM).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import NonFiniteLossError
from kdlab.text.blocks import BlockSampler, TokenBlocks
from kdlab.text.cross_tokenizer import alm_batch, token_logprobs
from kdlab.text.ddk import DDKMixture
from kdlab.text.generate import continue_ids
from kdlab.text.losses import LMMethod, TopK, student_log_probs
from kdlab.text.metrics import evaluate_lm
from kdlab.text.models import logits_of


@dataclass
class LMTrainConfig:
    """Optimisation of one LM: AdamW with linear warm-up then cosine decay, gradient clipping."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ce_weight: float = 1.0
    seed: int = 0
    device: str = "cpu"
    mixture: str = "natural"  # natural | uniform | ddk
    ddk_alpha: float = 0.5
    ddk_every: int = 50
    lmbda: float = 0.0  # on-policy fraction
    prompt_len: int = 0  # on-policy prompt tokens (0: half the block)
    gen_temperature: float = 1.0


@dataclass
class TrainState:
    """Where a run stands (saved with its checkpoint, restored on resume)."""

    step: int = 0
    optimizer: dict | None = None
    sampler: dict | None = None
    method: dict = field(default_factory=dict)
    ddk: dict | None = None
    seconds: float = 0.0


StepCallback = Callable[[int, dict[str, float]], None]


def _schedule(cfg: LMTrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        span = max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / span)))

    return factor


def masked_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the ``mask``ed positions."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    m = mask.flatten().float()
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def train_lm(student: nn.Module, blocks: TokenBlocks, cfg: LMTrainConfig, *, teacher: nn.Module | None = None,
             method: LMMethod | None = None, val_blocks: TokenBlocks | None = None, topk=None,
             alm=None, state: TrainState | None = None, on_step: StepCallback | None = None,
             on_checkpoint: Callable[[TrainState], None] | None = None, checkpoint_every: int = 0,
             should_stop: Callable[[], bool] | None = None) -> TrainState:
    """Train ``student`` for ``cfg.steps`` steps (continuing from ``state``); returns the final state.

    ``topk`` (a ``TopKCache`` over ``blocks``) replaces the teacher's forward pass on corpus batches; ``alm``
    (an ``ALMData``) makes steps cross-tokenizer (the teacher reads the same text under its own tokenizer).
    ``on_step(step, values)`` gets every step's loss terms; ``on_checkpoint(state)`` is called every
    ``checkpoint_every`` steps and at the end, with the live state (its optimizer entry holds the optimizer's
    tensors: save it there and then). Batches come from seeded generators; the global random state is untouched.
    """
    device = cfg.device
    student.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    state = state or TrainState()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    factor = _schedule(cfg)
    if state.optimizer:
        opt.load_state_dict(state.optimizer)
    sampler = BlockSampler(blocks, cfg.seed)
    if state.sampler:
        sampler.load_state(state.sampler)
    if method is not None and state.method:
        method.load_state(state.method)
    ddk = _ddk(cfg, sampler, state, teacher, val_blocks) if cfg.mixture == "ddk" else None
    policy_gen = torch.Generator().manual_seed(cfg.seed + 7919 + state.step)
    t0 = time.perf_counter() - state.seconds
    while state.step < cfg.steps:
        if should_stop and should_stop():
            break
        weights = ddk.mixture.weights if ddk else (sampler.uniform() if cfg.mixture == "uniform" else None)
        idx = sampler.sample(cfg.batch_size, weights)
        on_policy = cfg.lmbda > 0 and float(torch.rand((), generator=policy_gen)) < cfg.lmbda
        if alm is not None:
            terms = alm.terms(student, teacher, method, blocks.ids[idx], device)
        else:
            terms = _token_terms(student, teacher, method, blocks, idx, topk, cfg, on_policy, state.step)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"step {state.step}: the loss is not finite "
                                     f"({', '.join(f'{k}={float(v.detach()):.4g}' for k, v in terms.items())}); "
                                     "lower lr or the method's temperature")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        for group in opt.param_groups:  # the schedule is a function of the step alone: resumes exactly
            group["lr"] = cfg.lr * factor(state.step)
        opt.step()
        state.step += 1
        values = {f"loss/{k}": float(v.detach()) for k, v in terms.items()}
        values["loss/total"] = float(loss.detach())
        values["lr"] = opt.param_groups[0]["lr"]
        values["on_policy"] = float(on_policy)
        if method is not None:
            method.on_step(state.step / cfg.steps, {k: values[f"loss/{k}"] for k in terms})
            values.update({f"method/{k}": float(v) for k, v in method.info().items()})
        if ddk is not None and state.step % cfg.ddk_every == 0 and state.step < cfg.steps:
            ddk.update(student)
            values.update({f"mixture/{d}": float(w) for d, w in zip(blocks.domains, ddk.mixture.weights,
                                                                    strict=True)})
        state.seconds = time.perf_counter() - t0
        if on_step:
            on_step(state.step, values)
        if on_checkpoint and ((checkpoint_every and state.step % checkpoint_every == 0) or state.step == cfg.steps):
            _snapshot(state, opt, sampler, method, ddk)
            on_checkpoint(state)
    _snapshot(state, opt, sampler, method, ddk)
    student.eval()
    return state


def _snapshot(state: TrainState, opt, sampler: BlockSampler, method: LMMethod | None, ddk) -> None:
    state.optimizer = opt.state_dict()
    state.sampler = sampler.state()
    state.method = method.state() if method is not None else {}
    state.ddk = ddk.mixture.state() if ddk is not None else None


def _token_terms(student, teacher, method, blocks: TokenBlocks, idx, topk, cfg: LMTrainConfig,
                 on_policy: bool, step: int) -> dict[str, torch.Tensor]:
    """Loss terms of one same-tokenizer batch: ``ce`` (weighted by ``cfg.ce_weight``) and the method's terms."""
    device = cfg.device
    ids = blocks.ids[idx].to(device)
    mask = blocks.mask[idx].to(device)
    if on_policy:  # the student continues each block's first tokens; only its own tokens carry the loss
        prompt = cfg.prompt_len or blocks.block_size // 2
        ids = continue_ids(student, ids[:, :prompt], blocks.block_size + 1 - prompt, cfg.gen_temperature,
                           seed=cfg.seed * 100_003 + step)
        mask = torch.zeros_like(mask)
        mask[:, prompt - 1:] = True
    logits = logits_of(student, ids[:, :-1])
    terms: dict[str, torch.Tensor] = {}
    if method is None or not method.uses_teacher_logits:
        return {"ce": (cfg.ce_weight or 1.0) * masked_ce(logits, ids[:, 1:], mask)}
    logp = F.log_softmax(logits.float(), -1)  # once: the cross-entropy and the divergence share it
    if cfg.ce_weight and not on_policy:
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        terms["ce"] = cfg.ce_weight * (nll * mask).sum() / mask.sum().clamp_min(1)
    full = bool(mask.all())  # the usual case: a view, not a copy of [tokens x vocabulary] and its gradient

    def tokens(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 1) if full else x[mask]

    if topk is not None and not on_policy:
        cached = topk.get(idx)
        t: Any = TopK(tokens(cached.values.to(device)), tokens(cached.indices.to(device)))
    else:
        with torch.no_grad():
            t = tokens(logits_of(teacher, ids[:, :-1]))
    with student_log_probs():
        terms.update(method.terms(tokens(logp), t))
    return terms


class ALMData:
    """Cross-tokenizer steps (ALM): each student block's text is read by the teacher under its own tokenizer;
    the chunks where both tokenizations end a token carry the loss (``kdlab.text.cross_tokenizer``)."""

    def __init__(self, teacher_tok, student_tok, block_size: int, ce_weight: float = 1.0):
        self.teacher_tok, self.student_tok = teacher_tok, student_tok
        self.block_size, self.ce_weight = block_size, ce_weight

    def terms(self, student, teacher, method, ids: torch.Tensor, device: str) -> dict[str, torch.Tensor]:
        texts = [self.student_tok.decode(row.tolist()) for row in ids]
        b = {k: v.to(device) for k, v in alm_batch(texts, self.teacher_tok, self.student_tok,
                                                    self.block_size + 1).items()}
        s_logits = student(input_ids=b["s_ids"], attention_mask=b["s_attention_mask"], use_cache=False).logits
        s_lp = token_logprobs(s_logits, b["s_ids"])
        with torch.no_grad():
            t_lp = token_logprobs(teacher(input_ids=b["t_ids"], attention_mask=b["t_attention_mask"],
                                          use_cache=False).logits, b["t_ids"])
        terms = method.terms_from_logprobs(s_lp, t_lp, b["s_ends"], b["t_ends"], b["chunk_mask"])
        if self.ce_weight:
            m = b["s_attention_mask"][:, 1:].float()
            terms = {"ce": self.ce_weight * -(s_lp * m).sum() / m.sum().clamp_min(1.0), **terms}
        return terms


class _DDK:
    """DDK's mixture, fed by per-domain validation bits per byte of student and (once) teacher."""

    def __init__(self, mixture: DDKMixture, teacher_bpb: torch.Tensor, val: TokenBlocks, cfg: LMTrainConfig):
        self.mixture, self.teacher_bpb, self.val, self.cfg = mixture, teacher_bpb, val, cfg

    def update(self, student: nn.Module) -> None:
        s = _domain_bpb(student, self.val, self.cfg)
        self.mixture.update(s, self.teacher_bpb)
        student.train()


def _domain_bpb(model: nn.Module, val: TokenBlocks, cfg: LMTrainConfig) -> torch.Tensor:
    table = evaluate_lm(model, val, cfg.batch_size, cfg.device).set_index("domain")
    return torch.tensor([float(table["bpb"].get(d, float("nan"))) for d in val.domains], dtype=torch.float64)


def _ddk(cfg: LMTrainConfig, sampler: BlockSampler, state: TrainState, teacher, val: TokenBlocks | None) -> _DDK:
    from kdlab.errors import ConfigError

    if teacher is None or val is None or not len(val):
        raise ConfigError("mixture: 'ddk' follows the per-domain gap between teacher and student on validation text, "
                          f"and {'there is no teacher' if teacher is None else 'the validation split is empty'}; "
                          "give it more text (the job's max_mb) or more documents")
    mixture = DDKMixture(sampler.available, cfg.ddk_alpha)
    if state.ddk:
        mixture.load_state(state.ddk)
    return _DDK(mixture, _domain_bpb(teacher, val, cfg), val, cfg)
