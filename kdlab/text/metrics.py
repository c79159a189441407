"""How well a language model predicts held-out text, comparable across tokenizers: bits per byte (overall and
per domain), perplexity, and — against a teacher with the same vocabulary — top-1 agreement and KL; plus the
per-token view of one text (which tokens the student did not learn)."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.text.blocks import TokenBlocks
from kdlab.text.models import context_of, logits_of

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate_lm(model: nn.Module, blocks: TokenBlocks, batch_size: int = 16, device: str = "cpu",
                teacher: nn.Module | None = None, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Per-domain rows (and an ``all`` row): tokens, bytes, ``nll`` (nats/token), ``bpb`` (bits per UTF-8 byte:
    summed NLL / ln 2 / bytes, the tokenizer-free measure), ``ppl`` (per token), and with ``teacher`` (same
    vocabulary, same blocks) ``agreement`` (top-1) and ``kl`` (KL(teacher || model), nats/token)."""
    model.eval()
    if teacher is not None:
        teacher.eval()
    n_dom = len(blocks.domains)
    acc = {k: torch.zeros(n_dom, dtype=torch.float64) for k in ("nll", "tokens", "bytes", "agree", "kl")}
    n = len(blocks)
    for start in range(0, n, batch_size):
        ids = blocks.ids[start:start + batch_size].to(device)
        mask = blocks.mask[start:start + batch_size].to(device)
        nbytes = blocks.nbytes[start:start + batch_size, 1:].to(device)
        dom = blocks.domain[start:start + batch_size]
        logp = F.log_softmax(logits_of(model, ids[:, :-1]).float(), -1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        m = mask.double()
        _add(acc["nll"], dom, (nll.double() * m).sum(1).cpu())
        _add(acc["tokens"], dom, m.sum(1).cpu())
        _add(acc["bytes"], dom, (nbytes.double() * m).sum(1).cpu())
        if teacher is not None:
            t_logp = F.log_softmax(logits_of(teacher, ids[:, :-1]).float(), -1)
            agree = (t_logp.argmax(-1) == logp.argmax(-1)).double()
            kl = (t_logp.exp() * (t_logp - logp)).sum(-1).double()
            _add(acc["agree"], dom, (agree * m).sum(1).cpu())
            _add(acc["kl"], dom, (kl * m).sum(1).cpu())
        if progress:
            progress(min(start + batch_size, n), n)
    rows = []
    for name, sel in [*((d, slice(i, i + 1)) for i, d in enumerate(blocks.domains)), ("all", slice(None))]:
        tokens, nbytes, nll = (float(acc[k][sel].sum()) for k in ("tokens", "bytes", "nll"))
        if not tokens:
            continue
        row = {"domain": name, "tokens": int(tokens), "bytes": int(nbytes), "nll": nll / tokens,
               "bpb": nll / LN2 / nbytes, "ppl": math.exp(min(nll / tokens, 700.0))}
        if teacher is not None:
            row.update(agreement=float(acc["agree"][sel].sum()) / tokens, kl=float(acc["kl"][sel].sum()) / tokens)
        rows.append(row)
    return pd.DataFrame(rows)


def _add(total: torch.Tensor, dom: torch.Tensor, values: torch.Tensor) -> None:
    total.index_add_(0, dom, values)


@torch.no_grad()
def token_divergence(student: nn.Module, teacher: nn.Module, tok, text: str, top: int = 5,
                     device: str = "cpu", max_tokens: int = 512) -> pd.DataFrame:
    """One row per predicted token of ``text`` (student and teacher share ``tok``; its first ``max_tokens``
    tokens): its string, the KL from the teacher's to the student's next-token distribution at that position
    (nats), each model's log-prob of the actual token, and each model's ``top`` candidates with probabilities
    (the hover text of the view). A text longer than the models' context is read in windows of that length
    overlapping by one token (each token after the first is predicted once; a window restarts the context)."""
    ids = tok.encode(text)[: int(max_tokens)]
    if len(ids) < 2:
        return pd.DataFrame(columns=["position", "token", "kl", "student_logp", "teacher_logp",
                                     "student_top", "teacher_top"])
    width = min(context_of(student), context_of(teacher), len(ids))
    x = torch.tensor([ids], device=device)
    student.eval()
    teacher.eval()
    parts_s, parts_t = [], []
    for start in range(0, len(ids) - 1, width - 1):
        window = x[:, start:start + width]
        parts_s.append(F.log_softmax(logits_of(student, window[:, :-1]).float(), -1)[0])
        parts_t.append(F.log_softmax(logits_of(teacher, window[:, :-1]).float(), -1)[0])
    s, t = torch.cat(parts_s), torch.cat(parts_t)
    kl = (t.exp() * (t - s)).sum(-1)
    target = x[0, 1:]
    strings = tok.token_strings(ids)

    def cands(logp: torch.Tensor) -> list[str]:
        p, i = logp.exp().topk(min(top, logp.shape[-1]), -1)
        return ["  ".join(f"{tok.token_strings([int(k)])[0]!r} {float(v):.2f}" for v, k in zip(pr, ir, strict=True))
                for pr, ir in zip(p.tolist(), i.tolist(), strict=True)]

    return pd.DataFrame({
        "position": np.arange(1, len(ids)), "token": strings[1:], "kl": kl.cpu().numpy(),
        "student_logp": s.gather(-1, target[:, None]).squeeze(-1).cpu().numpy(),
        "teacher_logp": t.gather(-1, target[:, None]).squeeze(-1).cpu().numpy(),
        "student_top": cands(s), "teacher_top": cands(t)})

