"""ALM cross-tokenizer distillation (Minixhofer, Vulić, Ponti 2025, "Universal Cross-Tokenizer Distillation via
Approximate Likelihood Matching", arXiv:2503.20083): align two tokenizations of one text into chunks that end where
both have a token boundary, and match the teacher's and the student's chunk likelihoods.

Conventions (what ``alm_batch`` builds and ``terms_from_logprobs`` takes):

- every sequence starts with its tokenizer's ``eos_id`` used as a beginning-of-text token, so each text token has a
  conditional log-prob; ``ids[b, 0]`` is that token and ``ids[b, 1 + j]`` is text token ``j``;
- per-token log-probs ``token_lp[b, j] = log p(text token j | everything before)``, shape ``[B, L - 1]``; that is
  ``token_logprobs(logits, ids)`` with ``logits = model(ids).logits`` (position ``i`` predicts ``ids[:, i + 1]``);
- chunk ``c`` of row ``b`` holds text tokens ``ends[b, c - 1] .. ends[b, c] - 1`` (``ends[b, -1]`` read as 0);
  padding chunks repeat the last end, so they are empty (log-prob 0) and ``chunk_mask`` is False there.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from kdlab.errors import ConfigError, ShapeError


class _Tok(Protocol):
    """What ALM needs of a tokenizer (``kdlab.text.tokenize.TextTokenizer`` has it)."""

    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def token_bytes(self, ids: list[int]) -> list[int]: ...


def _boundaries(lengths: list[int]) -> list[int]:
    """Byte offsets where each token ends (running sum of byte lengths)."""
    out, pos = [], 0
    for n in lengths:
        pos += n
        out.append(pos)
    return out


def aligned_chunks(text: str, teacher_tok: _Tok, student_tok: _Tok
                   ) -> tuple[list[int], list[int], list[tuple[int, int]], list[tuple[int, int]]]:
    """Teacher ids, student ids, chunk ends ``(t_end, s_end)`` (exclusive token indices) and chunk byte spans
    ``(start, end)``: a chunk ends at every byte offset where both tokenizations end a token; works in utf-8 bytes
    (byte-level BPE tokens may split a character, so chunk edges may too)."""
    t_ids, s_ids = teacher_tok.encode(text), student_tok.encode(text)
    n_bytes = len(text.encode("utf-8"))
    t_bounds = _boundaries(teacher_tok.token_bytes(t_ids))
    s_bounds = _boundaries(student_tok.token_bytes(s_ids))
    for name, bounds in (("teacher", t_bounds), ("student", s_bounds)):
        if (bounds[-1] if bounds else 0) != n_bytes:
            raise ShapeError(f"{name} tokenizer's token_bytes sum to {bounds[-1] if bounds else 0}, the text has "
                             f"{n_bytes} utf-8 bytes: ALM needs a byte-level tokenizer whose tokens cover the text")
    ends: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []
    i = j = 0
    start = 0
    while i < len(t_bounds) and j < len(s_bounds):  # merge two sorted lists; equal offsets are shared boundaries
        if t_bounds[i] == s_bounds[j]:
            ends.append((i + 1, j + 1))
            spans.append((start, t_bounds[i]))
            start = t_bounds[i]
            i, j = i + 1, j + 1
        elif t_bounds[i] < s_bounds[j]:
            i += 1
        else:
            j += 1
    return t_ids, s_ids, ends, spans


def token_logprobs(logits: Tensor, ids: Tensor) -> Tensor:
    """``[B, L - 1]`` log-prob of each next token: ``log_softmax(logits[:, :-1])`` gathered at ``ids[:, 1:]``
    (float32, so chunk sums stay exact enough)."""
    if logits.dim() != 3 or ids.shape != logits.shape[:2]:
        raise ShapeError(f"logits must be [B, L, V] and ids [B, L]; got {tuple(logits.shape)} and {tuple(ids.shape)}")
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return lp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def chunk_logprobs(token_lp: Tensor, ends: Tensor) -> Tensor:
    """``[B, C]`` log-likelihood of each chunk: the sum of its tokens' log-probs, as differences of a running sum
    (accumulated in float64, returned in ``token_lp``'s dtype); empty (padding) chunks give 0."""
    if token_lp.dim() != 2 or ends.dim() != 2 or ends.shape[0] != token_lp.shape[0]:
        raise ShapeError(f"token_lp must be [B, L] and ends [B, C]; got {tuple(token_lp.shape)}, {tuple(ends.shape)}")
    if ends.numel() and int(ends.max()) > token_lp.shape[1]:
        raise ShapeError(f"a chunk ends at token {int(ends.max())} but token_lp has only {token_lp.shape[1]} tokens")
    zero = token_lp.new_zeros(token_lp.shape[0], 1, dtype=torch.float64)
    csum = torch.cat([zero, token_lp.double().cumsum(1)], dim=1)
    ends = ends.long()
    starts = torch.cat([ends.new_zeros(ends.shape[0], 1), ends[:, :-1]], dim=1)
    return (csum.gather(1, ends) - csum.gather(1, starts)).to(token_lp.dtype)


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of log(1/2)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def alm_loss(s_chunk_lp: Tensor, t_chunk_lp: Tensor, mask: Tensor, temperature: float = 1.0,
             eps: float = 1e-6) -> Tensor:
    """Binarised KL between chunk likelihoods, masked mean over chunks.

    For each chunk, ``p_T = exp(t_lp / temperature)`` and ``p_S = exp(s_lp / temperature)`` (the paper's
    binarisation temperature) define Bernoulli outcomes (this chunk, anything else), and the loss is
    ``KL(Bern(p_T) || Bern(p_S)) = p_T log(p_T / p_S) + (1 - p_T) log((1 - p_T) / (1 - p_S))``.
    The paper's default is the binary cross-entropy ``-(p_T log p_S + (1 - p_T) log(1 - p_S))``; it differs from
    this by the teacher's binary entropy, a constant for the student, so gradients are identical and the loss
    reads 0 when the likelihoods match. Log-likelihoods are shifted by ``-eps`` (as tokenkit does) so ``1 - p``
    never reaches 0. Simplifications: no outcome-chunk debiasing and no hidden-state term (the paper's
    optional extras); each chunk weighs the same (tokenkit's "chunk_count" numerator). The teacher is detached.
    """
    if s_chunk_lp.shape != t_chunk_lp.shape or mask.shape != s_chunk_lp.shape:
        raise ShapeError(f"s_chunk_lp, t_chunk_lp and mask must share a shape; got {tuple(s_chunk_lp.shape)}, "
                         f"{tuple(t_chunk_lp.shape)}, {tuple(mask.shape)}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    mask = mask.bool()
    # masked chunks get a harmless value *before* the maths, so no NaN/inf reaches the gradient through where()
    log_s = torch.where(mask, s_chunk_lp.float(), torch.full_like(s_chunk_lp.float(), -1.0))
    log_t = torch.where(mask, t_chunk_lp.detach().float(), torch.full_like(log_s, -1.0))
    log_s = log_s.clamp(max=0.0) / temperature - eps
    log_t = log_t.clamp(max=0.0) / temperature - eps
    p_t = log_t.exp()
    kl = p_t * (log_t - log_s) + (1 - p_t) * (_log1mexp(log_t) - _log1mexp(log_s))
    n = mask.sum()
    if int(n) == 0:
        return (kl * 0).sum()
    return (kl * mask).sum() / n


def alm_batch(texts: list[str], teacher_tok: _Tok, student_tok: _Tok, block_size: int) -> dict[str, Tensor]:
    """Padded tensors for a batch of texts: ``t_ids``/``s_ids`` ``[B, L]`` (each row ``[eos] + tokens`` cut to
    ``block_size``, padded with eos), ``t_attention_mask``/``s_attention_mask``, chunk ends ``t_ends``/``s_ends``
    ``[B, C]`` (text-token indices, see the module docstring) and ``chunk_mask`` ``[B, C]``. Chunks that are not
    complete in both truncated sequences are dropped; the tokens after the last kept chunk stay (the student's
    own next-token loss can use them)."""
    if int(block_size) < 2:
        raise ConfigError(f"block_size must be >= 2 (one start token and one text token), got {block_size!r}")
    if not texts:
        raise ConfigError("alm_batch needs at least one text")
    keep = block_size - 1  # text tokens that fit after the start token
    rows = []
    for text in texts:
        t_ids, s_ids, ends, _ = aligned_chunks(text, teacher_tok, student_tok)
        t_ids, s_ids = t_ids[:keep], s_ids[:keep]
        ends = [(te, se) for te, se in ends if te <= len(t_ids) and se <= len(s_ids)]
        rows.append(([teacher_tok.eos_id, *t_ids], [student_tok.eos_id, *s_ids], ends))
    n_t = max(len(r[0]) for r in rows)
    n_s = max(len(r[1]) for r in rows)
    n_c = max(1, max(len(r[2]) for r in rows))
    b = len(rows)
    out = {"t_ids": torch.full((b, n_t), teacher_tok.eos_id, dtype=torch.long),
           "s_ids": torch.full((b, n_s), student_tok.eos_id, dtype=torch.long),
           "t_attention_mask": torch.zeros(b, n_t, dtype=torch.long),
           "s_attention_mask": torch.zeros(b, n_s, dtype=torch.long),
           "t_ends": torch.zeros(b, n_c, dtype=torch.long), "s_ends": torch.zeros(b, n_c, dtype=torch.long),
           "chunk_mask": torch.zeros(b, n_c, dtype=torch.bool)}
    for i, (t_ids, s_ids, ends) in enumerate(rows):
        out["t_ids"][i, :len(t_ids)] = torch.tensor(t_ids)
        out["s_ids"][i, :len(s_ids)] = torch.tensor(s_ids)
        out["t_attention_mask"][i, :len(t_ids)] = 1
        out["s_attention_mask"][i, :len(s_ids)] = 1
        if ends:
            te, se = torch.tensor(ends).T
            out["t_ends"][i, :len(ends)], out["t_ends"][i, len(ends):] = te, te[-1]
            out["s_ends"][i, :len(ends)], out["s_ends"][i, len(ends):] = se, se[-1]
            out["chunk_mask"][i, :len(ends)] = True
    return out


def alm_terms(s_token_lp: Tensor, t_token_lp: Tensor, s_ends: Tensor, t_ends: Tensor, chunk_mask: Tensor,
              temperature: float = 1.0) -> dict[str, Tensor]:
    """``{"alm": loss}`` from per-token log-probs and chunk ends (what the "alm" method's terms are)."""
    s_chunk = chunk_logprobs(s_token_lp, s_ends)
    t_chunk = chunk_logprobs(t_token_lp.detach(), t_ends)
    return {"alm": alm_loss(s_chunk, t_chunk, chunk_mask, temperature)}


def _register() -> Any:
    """Register "alm" in kdlab.text.losses' LM_METHODS (cross-tokenizer: same_vocab False)."""
    from kdlab.registry import Param
    from kdlab.text.losses import LMMethod, register_lm_method

    @register_lm_method("alm")
    class ALM(LMMethod):
        """ALM cross-tokenizer KD: binarised KL of aligned chunk likelihoods.

        Minixhofer, Vulić & Ponti 2025 (arXiv:2503.20083)."""

        params = {
            "temperature": Param(1.0, "binarisation temperature: chunk p = exp(log-likelihood / T)", float, 0.0, 1000.0,
                                 low_open=True),
            "kd_weight": Param(1.0, "weight of the ALM term (the trainer adds ce_weight * cross-entropy)", float,
                               0.0, 100.0),
        }
        same_vocab = False

        def terms(self, s_logits: Tensor, t_logits: Any) -> dict[str, Tensor]:
            raise ConfigError("method 'alm' compares chunk likelihoods across tokenizers: call "
                              "terms_from_logprobs(s_token_lp, t_token_lp, s_ends, t_ends, chunk_mask) with a batch "
                              "from kdlab.text.cross_tokenizer.alm_batch, not terms(logits, logits)")

        def terms_from_logprobs(self, s_token_lp: Tensor, t_token_lp: Tensor, s_ends: Tensor, t_ends: Tensor,
                                chunk_mask: Tensor) -> dict[str, Tensor]:
            """``{"alm": kd_weight * loss}`` (weighted, like the other methods' ``terms``)."""
            terms = alm_terms(s_token_lp, t_token_lp, s_ends, t_ends, chunk_mask, self.hp["temperature"])
            return {"alm": self.hp["kd_weight"] * terms["alm"]}

    return ALM


ALM = _register()
