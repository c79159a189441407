"""Training-free tokenizer transplant by orthogonal matching pursuit (Goddard & Fernandes Neto 2025, "Training-Free
Tokenizer Transplantation via Orthogonal Matching Pursuit", arXiv:2506.06607; arcee-ai mergekit-tokensurgeon).

A base model speaks tokenizer A; a donor embedding space speaks tokenizer B. Tokens of B that A also has (the same
token string) keep the base's embedding exactly. Every other token of B is written, in the donor space, as a sparse
combination of the shared tokens' donor embeddings (OMP, k anchors), and the same coefficients combine the base's
embeddings of those anchors. The "mean" baseline (FVT, Gee et al. 2022) averages the base embeddings of the new
token's pieces under tokenizer A instead.
"""
from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor

from kdlab.errors import ConfigError, ShapeError

METHODS = ("omp", "mean")


def omp(dictionary: Tensor, targets: Tensor, k: int, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Batched orthogonal matching pursuit in float64: for each target row, ``k`` atoms (rows of ``dictionary``
    ``[n, d]``) and coefficients ``[m, k]`` such that ``coef @ dictionary[idx]`` approximates it; each step adds the
    atom most correlated (cosine) with the residual and refits all coefficients by least squares, so the residual
    never grows and a target that is a combination of ``k`` atoms in general position is recovered exactly."""
    if dictionary.dim() != 2 or targets.dim() != 2 or dictionary.shape[1] != targets.shape[1]:
        raise ShapeError(f"dictionary must be [n, d] and targets [m, d]; got {tuple(dictionary.shape)}, "
                         f"{tuple(targets.shape)}")
    n = dictionary.shape[0]
    if not 1 <= int(k) <= n:
        raise ConfigError(f"k must be in [1, {n}] (the number of anchors), got {k!r}")
    dic = dictionary.detach().double()
    norms = dic.norm(dim=1).clamp_min(1e-12)
    idx_parts, coef_parts = [], []
    for lo in range(0, targets.shape[0], chunk):
        y = targets[lo:lo + chunk].detach().double().to(dic.device)
        m = y.shape[0]
        idx = torch.zeros(m, 0, dtype=torch.long, device=dic.device)
        coef = y.new_zeros(m, 0)
        resid = y
        taken = torch.zeros(m, n, dtype=torch.bool, device=dic.device)
        for _ in range(int(k)):
            score = (resid @ dic.T).abs() / norms
            score = score.masked_fill(taken, -1.0)
            pick = score.argmax(dim=1)
            taken[torch.arange(m), pick] = True
            idx = torch.cat([idx, pick[:, None]], dim=1)
            atoms = dic[idx]  # [m, s, d]
            coef = torch.linalg.lstsq(atoms.transpose(1, 2), y[:, :, None]).solution.squeeze(-1)  # [m, s]
            resid = y - torch.einsum("ms,msd->md", coef, atoms)
        idx_parts.append(idx)
        coef_parts.append(coef)
    return torch.cat(idx_parts), torch.cat(coef_parts)


def _vocab(tok: Any) -> dict[str, int]:
    """Token string -> id of a TextTokenizer, a ``tokenizers.Tokenizer`` or a transformers tokenizer (raw strings:
    for byte-level BPE, the byte alphabet form, so equal strings are equal byte sequences)."""
    inner = getattr(tok, "tok", tok)
    try:
        return dict(inner.get_vocab(with_added_tokens=True))
    except TypeError:
        return dict(inner.get_vocab())


def _pieces(tok: Any, vocab: dict[str, int], token: str) -> list[int]:
    """Ids of ``token`` (a raw vocabulary string of another byte-level tokenizer) split by ``tok``'s own model."""
    inner = getattr(tok, "tok", tok)
    model = getattr(inner, "model", None)
    if model is not None and hasattr(model, "tokenize"):
        ids = [vocab[t.value] for t in model.tokenize(token) if t.value in vocab]
        if ids:
            return ids
    return list(tok.encode(token))


def transplant_embeddings(base_emb: Tensor, base_tok: Any, new_tok: Any, donor_embeddings: Tensor | None = None,
                          k: int = 8, method: Literal["omp", "mean"] = "omp") -> tuple[Tensor, dict[str, Any]]:
    """Rows for the new vocabulary ``[V_new, d]`` from the base rows ``[V_base, d]`` and a report (counts of shared
    and new tokens); shared tokens are copied exactly, new ones built by ``method``. ``donor_embeddings``
    ``[V_new, d_donor]`` is the donor model's embedding of the new vocabulary (needed by "omp")."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of {list(METHODS)}")
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    n_new = max(new_vocab.values()) + 1
    shared = sorted((nid, base_vocab[s]) for s, nid in new_vocab.items() if s in base_vocab
                    and base_vocab[s] < base_emb.shape[0])
    if not shared:
        raise ConfigError("the two tokenizers share no token string: nothing to anchor the transplant on")
    shared_new = torch.tensor([a for a, _ in shared])
    shared_base = torch.tensor([b for _, b in shared])
    is_shared = torch.zeros(n_new, dtype=torch.bool)
    is_shared[shared_new] = True
    missing = (~is_shared).nonzero().squeeze(1)
    out = base_emb.new_zeros(n_new, base_emb.shape[1], dtype=torch.float64)
    base64 = base_emb.detach().double()
    out[shared_new] = base64[shared_base]
    if len(missing):
        if method == "omp":
            if donor_embeddings is None:
                raise ConfigError("method 'omp' needs donor_embeddings (the new vocabulary in a donor model)")
            if donor_embeddings.shape[0] < n_new:
                raise ShapeError(f"donor_embeddings has {donor_embeddings.shape[0]} rows; the new tokenizer has "
                                 f"{n_new} tokens")
            donor = donor_embeddings.detach().double().cpu()
            idx, coef = omp(donor[shared_new], donor[missing], min(k, len(shared)))
            anchors = base64[shared_base][idx]  # [m, k, d]
            out[missing] = torch.einsum("mk,mkd->md", coef, anchors)
        else:
            inv = {i: s for s, i in new_vocab.items()}
            for i in missing.tolist():
                pieces = _pieces(base_tok, base_vocab, inv[i])
                if pieces:
                    out[i] = base64[torch.tensor(pieces)].mean(0)
                else:
                    out[i] = base64.mean(0)
    info = {"method": method, "k": k, "n_shared": len(shared), "n_new": int(len(missing)), "vocab_size": n_new}
    return out.to(base_emb.dtype), info


def transplant_tokenizer(model: Any, base_tok: Any, new_tok: Any, donor_embeddings: Tensor | None = None,
                         k: int = 8, method: Literal["omp", "mean"] = "omp") -> Any:
    """A new model (deep copy; ``model`` is left untouched) whose input and output embeddings speak ``new_tok``:
    transformers causal LMs, tied or untied embeddings; the output embeddings of an untied model use the same
    OMP coefficients (or pieces) as the input ones. ``model.transplant_info`` holds the report."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not one of {list(METHODS)}")
    emb_in = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    tied = out_layer is not None and out_layer.weight is emb_in
    new_in, info = transplant_embeddings(emb_in, base_tok, new_tok, donor_embeddings, k, method)
    new_out = None
    if out_layer is not None and not tied:
        new_out, _ = transplant_embeddings(out_layer.weight, base_tok, new_tok, donor_embeddings, k, method)
    new_model = copy.deepcopy(model)
    new_model.resize_token_embeddings(new_in.shape[0], mean_resizing=False)
    with torch.no_grad():
        new_model.get_input_embeddings().weight.copy_(new_in)
        if new_out is not None:
            layer = new_model.get_output_embeddings()
            layer.weight.copy_(new_out)
            if getattr(layer, "bias", None) is not None:  # a bias has no donor view: zero for the new vocabulary
                layer.bias.zero_()
    if tied:
        new_model.tie_weights()
    _remap_special_ids(new_model, base_tok, new_tok)
    new_model.transplant_info = info
    return new_model


def _remap_special_ids(model: Any, base_tok: Any, new_tok: Any) -> None:
    """bos/eos/pad ids in the config speak the new vocabulary: same token string, else the new tokenizer's eos."""
    base_inv = {i: s for s, i in _vocab(base_tok).items()}
    new_vocab = _vocab(new_tok)
    fallback = getattr(new_tok, "eos_id", None)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is None:
            continue
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            old = getattr(cfg, name, None)
            if isinstance(old, int):
                setattr(cfg, name, new_vocab.get(base_inv.get(old, ""), fallback))
