"""OMP tokenizer transplant (kdlab.text.transplant): OMP itself, embedding reconstruction, transformers models."""
from __future__ import annotations

import functools
import random

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.text.transplant import omp, transplant_embeddings, transplant_tokenizer

TEXT = ("def mean(xs):\n    return sum(xs) / len(xs)\n\nclass Point:\n    x: float = 0.0\n    y: float = 0.0\n"
        "Le café déjà vu — naïve façade, emoji 🙂 and more text for merges; the lazy dog sleeps in the sun.\n")


def _train(vocab_size: int, extra: str):
    from kdlab.text.corpus import from_texts
    from kdlab.text.tokenize import train_tokenizer

    rng = random.Random(vocab_size)
    noise = "".join(rng.choice("abcdefgh ijk\nxyz_().,é") for _ in range(2000))
    return train_tokenizer(from_texts([TEXT * 4, noise, extra]), vocab_size, min_frequency=2, cache=False)


@functools.cache
def _toks():
    """Two byte-level BPE vocabularies that share many tokens and differ in many others."""
    return _train(300, "return return sum sum"), _train(360, "mean mean Point Point lazy lazy")


def _vocab(tok) -> dict[str, int]:
    return tok.tok.get_vocab()


def _sparse_targets(dic: torch.Tensor, k: int, m: int, g: torch.Generator):
    n = dic.shape[0]
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(m)])
    coef = torch.randn(m, k, generator=g, dtype=torch.float64).sign() * (1 + torch.rand(m, k, generator=g))
    return idx, coef, torch.einsum("mk,mkd->md", coef, dic[idx])


def test_omp_recovers_k_sparse_targets_exactly():
    """Incoherent atoms (orthogonal, unequal norms: mutual coherence 0 < 1/(2k-1)) guarantee exact recovery."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=torch.float64))
    dic = q[:50] * (0.2 + 3 * torch.rand(50, 1, generator=g, dtype=torch.float64))
    k, m = 6, 200
    true_idx, true_coef, y = _sparse_targets(dic, k, m, g)
    idx, coef = omp(dic.float(), y.float(), k)  # float32 in, float64 inside
    assert idx.shape == (m, k) and coef.dtype == torch.float64
    recon = torch.einsum("mk,mkd->md", coef, dic.float().double()[idx])
    assert (recon - y.float().double()).norm(dim=1).max() < 1e-4
    got = {(i, a): c for i in range(m) for a, c in zip(idx[i].tolist(), coef[i].tolist(), strict=True)}
    want = {(i, a): c for i in range(m) for a, c in zip(true_idx[i].tolist(), true_coef[i].tolist(), strict=True)}
    assert got.keys() == want.keys()
    assert max(abs(got[key] - want[key]) for key in want) < 1e-4
    # random Gaussian atoms (no guarantee): still nearly always exact in float64
    dic = torch.randn(60, 128, generator=g, dtype=torch.float64)
    _, _, y = _sparse_targets(dic, 5, 200, g)
    idx, coef = omp(dic, y, 5)
    resid = (y - torch.einsum("mk,mkd->md", coef, dic[idx])).norm(dim=1)
    assert (resid < 1e-9).float().mean() >= 0.97


def test_omp_residual_never_grows_and_atoms_are_distinct():
    g = torch.Generator().manual_seed(1)
    dic, y = torch.randn(30, 12, generator=g), torch.randn(50, 12, generator=g)
    prev = y.double().norm(dim=1)
    for k in range(1, 13):
        idx, coef = omp(dic, y, k)
        assert all(len(set(row)) == k for row in idx.tolist())
        resid = (y.double() - torch.einsum("mk,mkd->md", coef, dic.double()[idx])).norm(dim=1)
        assert torch.all(resid <= prev + 1e-9)
        prev = resid
    assert prev.max() < 1e-8  # 12 independent atoms span R^12
    _, _, exact = _sparse_targets(dic.double(), 2, 20, g)  # asking more atoms than needed: still distinct
    idx, _ = omp(dic, exact, 6)
    assert all(len(set(row)) == 6 for row in idx.tolist())


def test_omp_picks_atoms_by_cosine_not_by_raw_correlation():
    """A long atom with a larger dot product but a worse angle must lose to the exact unit atom."""
    dic = torch.tensor([[1.0, 0.0], [3.0, 9.5]])  # <a1, y> = 3 > <a0, y> = 1, but cos(a1, y) = 0.3
    idx, coef = omp(dic, torch.tensor([[1.0, 0.0]]), 1)
    assert idx.tolist() == [[0]] and coef.tolist() == [[1.0]]
    with pytest.raises(ConfigError):
        omp(dic, dic, 3)  # k above the number of anchors


def test_omp_beats_the_mean_baseline_when_the_donor_is_a_linear_map_of_the_base():
    """Every token string has a hidden 'true' vector; the base space holds it, the donor space a linear image of
    it: OMP's coefficients found in the donor space rebuild the base vectors of new tokens."""
    base_tok, new_tok = _toks()
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    strings = sorted(set(base_vocab) | set(new_vocab))
    g = torch.Generator().manual_seed(0)
    true = dict(zip(strings, torch.randn(len(strings), 12, generator=g, dtype=torch.float64), strict=True))
    base_emb = torch.stack([true[s] for s, _ in sorted(base_vocab.items(), key=lambda kv: kv[1])])
    new_true = torch.stack([true[s] for s, _ in sorted(new_vocab.items(), key=lambda kv: kv[1])])
    donor = new_true @ torch.randn(12, 20, generator=g, dtype=torch.float64)  # injective linear map
    got_omp, info = transplant_embeddings(base_emb, base_tok, new_tok, donor, k=8, method="omp")
    got_mean, _ = transplant_embeddings(base_emb, base_tok, new_tok, method="mean")
    assert info["n_shared"] > 100 and info["n_new"] > 20 and got_omp.shape == (len(new_vocab), 12)
    new_only = torch.tensor([i for s, i in new_vocab.items() if s not in base_vocab])
    shared = torch.tensor([i for s, i in new_vocab.items() if s in base_vocab])
    assert torch.equal(got_omp[shared], new_true[shared]) and torch.equal(got_mean[shared], new_true[shared])
    err_omp = (got_omp[new_only] - new_true[new_only]).norm(dim=1) / new_true[new_only].norm(dim=1)
    err_mean = (got_mean[new_only] - new_true[new_only]).norm(dim=1) / new_true[new_only].norm(dim=1)
    assert err_omp.mean() < 0.2 * err_mean.mean() and err_omp.mean() < 0.3  # measured: 0.08 vs 1.19
    # k = dimension: the shared anchors span the space, so reconstruction is exact
    exact, _ = transplant_embeddings(base_emb, base_tok, new_tok, donor, k=12, method="omp")
    torch.testing.assert_close(exact, new_true, rtol=0, atol=1e-8)


def test_mean_baseline_averages_the_pieces_under_the_base_tokenizer():
    base_tok, new_tok = _toks()
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    base_emb = torch.randn(len(base_vocab), 6, dtype=torch.float64)
    got, _ = transplant_embeddings(base_emb, base_tok, new_tok, method="mean")
    checked = 0
    for s, i in new_vocab.items():
        if s in base_vocab or s.startswith("<|"):
            continue
        pieces = base_tok.encode(bytes(_byte_table()[c] for c in s).decode("utf-8", errors="strict"))
        torch.testing.assert_close(got[i], base_emb[pieces].mean(0))
        checked += 1
        if checked == 20:
            break
    assert checked == 20


def _byte_table() -> dict[str, int]:
    from kdlab.text.tokenize import _byte_table as table

    return table()


def _tiny(kind: str, vocab: int, tied: bool):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                      tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                                   tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize(("kind", "tied"), [("gpt2", True), ("llama", False), ("llama", True)])
def test_transplant_tokenizer_builds_a_new_model_for_the_new_vocabulary(kind, tied):
    base_tok, new_tok = _toks()
    model = _tiny(kind, base_tok.vocab_size, tied)
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    moved = next(s for s in sorted(base_vocab) if s in new_vocab and base_vocab[s] != new_vocab[s])
    model.config.bos_token_id = base_vocab[moved]  # special ids follow their token string into the new vocabulary
    before = {k: v.clone() for k, v in model.state_dict().items()}
    donor = torch.randn(new_tok.vocab_size, 10)
    new = transplant_tokenizer(model, base_tok, new_tok, donor, k=4)
    assert new is not model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # original untouched
    assert new.config.vocab_size == new_tok.vocab_size
    assert new.get_input_embeddings().weight.shape[0] == new_tok.vocab_size
    assert new.get_output_embeddings().weight.shape[0] == new_tok.vocab_size
    is_tied = new.get_output_embeddings().weight.data_ptr() == new.get_input_embeddings().weight.data_ptr()
    assert is_tied == tied
    assert new.config.bos_token_id == new_vocab[moved] and model.config.bos_token_id == base_vocab[moved]
    pairs = [(new_vocab[s], b) for s, b in base_vocab.items() if s in new_vocab]
    n_ids, b_ids = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    w_in = model.get_input_embeddings().weight
    assert torch.equal(new.get_input_embeddings().weight[n_ids], w_in[b_ids])  # shared tokens copied exactly
    w_out = model.get_output_embeddings().weight
    assert torch.equal(new.get_output_embeddings().weight[n_ids], w_out[b_ids])
    if not tied:  # the output rows of new tokens come from the base output rows, not the input ones
        out_only = transplant_embeddings(w_out, base_tok, new_tok, donor, k=4)[0]
        torch.testing.assert_close(new.get_output_embeddings().weight.detach(), out_only)
    assert new.config.eos_token_id == new_tok.eos_id
    ids = torch.tensor([new_tok.encode("def mean(xs): café 🙂")])
    with torch.no_grad():
        logits = new(ids).logits
    assert logits.shape == (1, ids.shape[1], new_tok.vocab_size) and torch.isfinite(logits).all()
    mean_model = transplant_tokenizer(model, base_tok, new_tok, method="mean")
    assert mean_model.transplant_info["method"] == "mean"
    with pytest.raises(ConfigError, match="donor_embeddings"):
        transplant_tokenizer(model, base_tok, new_tok, None, method="omp")
    with pytest.raises(ConfigError, match="omp"):
        transplant_tokenizer(model, base_tok, new_tok, donor, method="fvt")


def test_omp_shape_and_k_checks():
    from kdlab.errors import ShapeError

    g = torch.Generator().manual_seed(2)
    dic, y = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g)
    with pytest.raises(ShapeError, match="dictionary must be"):
        omp(dic, torch.randn(3, 6, generator=g), 2)  # only the feature sizes differ
    with pytest.raises(ShapeError, match="dictionary must be"):
        omp(dic[0], y, 2)
    with pytest.raises(ConfigError, match="k must be"):
        omp(dic, y, 0)
    idx, coef = omp(dic, y, 5)  # k = n: every anchor, the exact least-squares fit on all of them
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4]
    lsq = torch.linalg.lstsq(dic.double().T, y.double().T).solution.T  # [m, n]
    torch.testing.assert_close(torch.einsum("mk,mkd->md", coef, dic.double()[idx]), lsq @ dic.double())


def test_omp_result_does_not_depend_on_the_chunk_size():
    g = torch.Generator().manual_seed(3)
    dic, y = torch.randn(20, 4, generator=g), torch.randn(10, 4, generator=g)  # more targets than features
    idx, coef = omp(dic, y, 3)
    for chunk in (1, 3, 7, 10, 64):
        idx_c, coef_c = omp(dic, y, 3, chunk=chunk)
        assert torch.equal(idx_c, idx)
        torch.testing.assert_close(coef_c, coef, rtol=0, atol=1e-12)


def test_omp_is_invariant_to_the_scale_of_the_dictionary():
    """Cosine selection: shrinking every atom (even far below unit norm) picks the same atoms, coefficients scale
    inversely."""
    dic = torch.tensor([[1.0, 0.0], [3.0, 9.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.3, 1.0]], dtype=torch.float64)
    idx, coef = omp(dic, y, 1)
    assert idx.tolist() == [[0], [1]]
    for scale in (1e-2, 1e-4, 10.0):
        idx_s, coef_s = omp(dic * scale, y, 1)
        assert torch.equal(idx_s, idx)
        torch.testing.assert_close(coef_s * scale, coef)


def test_results_carry_no_autograd_graph():
    """A training-free tool on live parameters: nothing it returns keeps a graph back into the tables."""
    g = torch.Generator().manual_seed(4)
    dic = torch.nn.Parameter(torch.randn(8, 5, generator=g))
    y = torch.randn(3, 5, generator=g).requires_grad_(True)
    _, coef = omp(dic, y, 2)
    assert not coef.requires_grad
    base_tok, new_tok = _toks()
    base = torch.nn.Parameter(torch.randn(base_tok.vocab_size, 6, generator=g))
    donor = torch.nn.Parameter(torch.randn(new_tok.vocab_size, 8, generator=g))
    for method in ("omp", "mean"):
        out, _ = transplant_embeddings(base, base_tok, new_tok, donor, k=2, method=method)
        assert not out.requires_grad


def test_added_tokens_are_shared_and_copied():
    """Tokens added to a tokenizer after training (outside its BPE model) are part of its vocabulary."""
    from tokenizers import Tokenizer

    base_tok, new_tok = _toks()
    base_raw, new_raw = Tokenizer.from_str(base_tok.tok.to_str()), Tokenizer.from_str(new_tok.tok.to_str())
    base_raw.add_tokens(["<|sep|>"])
    new_raw.add_tokens(["<|sep|>"])
    b_id, n_id = base_raw.token_to_id("<|sep|>"), new_raw.token_to_id("<|sep|>")
    assert b_id == base_tok.vocab_size and n_id == new_tok.vocab_size  # after the trained vocabulary
    g = torch.Generator().manual_seed(5)
    base_emb = torch.randn(base_tok.vocab_size + 1, 6, generator=g, dtype=torch.float64)
    donor = torch.randn(new_tok.vocab_size + 1, 8, generator=g, dtype=torch.float64)
    out, info = transplant_embeddings(base_emb, base_raw, new_raw, donor, k=3)
    assert out.shape == (new_tok.vocab_size + 1, 6) and info["vocab_size"] == new_tok.vocab_size + 1
    assert torch.equal(out[n_id], base_emb[b_id])


def test_base_ids_beyond_the_embedding_table_are_not_anchors():
    """A base tokenizer with more ids than the table has rows: those tokens are treated as new, not copied."""
    base_tok, new_tok = _toks()
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    shared_ids = sorted(base_vocab[s] for s in new_vocab if s in base_vocab)
    rows = shared_ids[-1]  # the table stops just before the last shared token's id
    g = torch.Generator().manual_seed(6)
    base_emb = torch.randn(rows, 6, generator=g, dtype=torch.float64)
    donor = torch.randn(new_tok.vocab_size, 8, generator=g, dtype=torch.float64)
    out, info = transplant_embeddings(base_emb, base_tok, new_tok, donor, k=3)
    assert info["n_shared"] == len(shared_ids) - 1 and torch.isfinite(out).all()
    assert info["n_new"] == len(new_vocab) - len(shared_ids) + 1


def test_omp_with_one_anchor_scales_a_single_base_row():
    """k = 1: each new token's row is a multiple of one shared token's base row."""
    base_tok, new_tok = _toks()
    base_vocab, new_vocab = _vocab(base_tok), _vocab(new_tok)
    g = torch.Generator().manual_seed(7)
    base_emb = torch.randn(len(base_vocab), 6, generator=g, dtype=torch.float64)
    donor = torch.randn(len(new_vocab), 8, generator=g, dtype=torch.float64)
    out, info = transplant_embeddings(base_emb, base_tok, new_tok, donor, k=1)
    assert info["k"] == 1
    shared_rows = torch.stack([base_emb[base_vocab[s]] for s in new_vocab if s in base_vocab])
    new_rows = torch.stack([out[i] for s, i in new_vocab.items() if s not in base_vocab])
    cos = torch.nn.functional.normalize(new_rows, dim=1) @ torch.nn.functional.normalize(shared_rows, dim=1).T
    assert torch.allclose(cos.abs().max(dim=1).values, torch.ones(len(new_rows), dtype=torch.float64))


class _CharTok:
    """A duck-typed character tokenizer (get_vocab without keyword arguments, encode dropping unknown characters);
    ``model`` is only a name here, not a ``tokenizers`` model, so pieces come from encode."""

    model = "char"

    def __init__(self, tokens):
        self.vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self):
        return dict(self.vocab)

    def encode(self, text):
        return [self.vocab[c] for c in text if c in self.vocab]


def test_mean_baseline_with_duck_typed_tokenizers_and_no_pieces():
    base, new = _CharTok(["a", "b", "c", "d"]), _CharTok(["a", "ab", "zz", "c", "bdd"])
    base_emb = torch.tensor([[1.0, 0.0, 2.0], [3.0, 4.0, 0.0], [0.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    out, info = transplant_embeddings(base_emb, base, new, method="mean")
    assert info["n_shared"] == 2 and info["n_new"] == 3 and out.shape == (5, 3)
    torch.testing.assert_close(out[0], base_emb[0])
    torch.testing.assert_close(out[3], base_emb[2])
    torch.testing.assert_close(out[1], (base_emb[0] + base_emb[1]) / 2)
    torch.testing.assert_close(out[4], (base_emb[1] + 2 * base_emb[3]) / 3)
    torch.testing.assert_close(out[2], base_emb.mean(0))  # no piece at all: the mean of every base row


def test_headless_model_and_the_same_default_k():
    """A model without output embeddings (a bare transformer) gets new input embeddings; transplant_tokenizer's
    default k is transplant_embeddings' default."""
    transformers = pytest.importorskip("transformers")
    base_tok, new_tok = _toks()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=base_tok.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2Model(cfg).eval()
    assert model.get_output_embeddings() is None
    donor = torch.randn(new_tok.vocab_size, 10)
    new = transplant_tokenizer(model, base_tok, new_tok, donor)
    want, info = transplant_embeddings(model.get_input_embeddings().weight, base_tok, new_tok, donor)
    assert new.transplant_info["k"] == info["k"]
    torch.testing.assert_close(new.get_input_embeddings().weight.detach(), want)
    with torch.no_grad():
        hidden = new(torch.tensor([new_tok.encode("def mean(xs)")])).last_hidden_state
    assert torch.isfinite(hidden).all()
