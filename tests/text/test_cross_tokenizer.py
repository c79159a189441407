"""ALM (kdlab.text.cross_tokenizer): chunk alignment in bytes, chunk log-probs, the binarised-KL loss, batches."""
from __future__ import annotations

import functools
import math
import random

import pytest
import torch

from kdlab.text.cross_tokenizer import aligned_chunks, alm_batch, alm_loss, alm_terms, chunk_logprobs, token_logprobs

TEXT = ("def mean(xs):\n    return sum(xs) / len(xs)\n\nclass Point:\n    x: float = 0.0\n    y: float = 0.0\n"
        "Le café déjà vu — naïve façade, 東京 と 大阪, Ελληνικά, emoji 🙂🚀 and more text for merges.\n"
        "The quick brown fox jumps over the lazy dog; the lazy dog sleeps in the sun.\n")
ALPHABET = list("abcdefghij klmno  \n\tXYZ_():.,") + ["é", "ß", "東", "京", "🙂", "—", "ñ"]


def _train(vocab_size: int):
    """A byte-level BPE tokenizer on a few KB (kdlab's train_tokenizer when it is there)."""
    texts = [TEXT * 3, "".join(random.Random(1).choice(ALPHABET) for _ in range(3000))]
    try:
        from kdlab.text.corpus import from_texts
        from kdlab.text.tokenize import train_tokenizer
    except ImportError:
        return _local_tokenizer(texts, vocab_size)
    return train_tokenizer(from_texts(texts), vocab_size, min_frequency=2, cache=False)


def _local_tokenizer(texts, vocab_size):  # pragma: no cover - only while kdlab.text.tokenize is missing
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)

    class Tok:
        eos_id = tok.token_to_id("<|endoftext|>")
        vocab_size = tok.get_vocab_size()

        def __init__(self):
            self.tok = tok

        def encode(self, text):
            return tok.encode(text).ids

        def token_bytes(self, ids):
            return [len(tok.id_to_token(i)) for i in ids]

    return Tok()


@functools.cache
def _toks():
    return _train(300), _train(420)


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """The GPT-2 byte-level alphabet, inverted: a raw token string's character -> the byte it stands for."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _token_byte_strings(tok, ids) -> list[bytes]:
    """Each token's bytes, read independently of token_bytes from the raw vocabulary strings."""
    inner = tok.tok
    table = _byte_of_char()
    return [bytes(table[c] for c in inner.id_to_token(i)) for i in ids]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 60)))


def test_chunk_ends_are_exactly_the_shared_byte_boundaries():
    """Brute force: the chunk ends are every byte offset where both tokenizations end a token, nothing else."""
    teacher, student = _toks()
    rng = random.Random(0)
    texts = [_random_text(rng) for _ in range(150)] + [TEXT, "é", "🙂🙂", "a"]
    for text in texts:
        t_ids, s_ids, ends, spans = aligned_chunks(text, teacher, student)
        raw = text.encode()
        t_pieces, s_pieces = _token_byte_strings(teacher, t_ids), _token_byte_strings(student, s_ids)
        assert b"".join(t_pieces) == raw and b"".join(s_pieces) == raw
        t_cut = {sum(len(p) for p in t_pieces[:i + 1]) for i in range(len(t_pieces))}
        s_cut = {sum(len(p) for p in s_pieces[:i + 1]) for i in range(len(s_pieces))}
        shared = sorted(t_cut & s_cut)
        assert [end for _, end in spans] == shared
        for (te, se), (_, end) in zip(ends, spans, strict=True):
            assert b"".join(t_pieces[:te]) == raw[:end] == b"".join(s_pieces[:se])


def test_chunk_byte_spans_tile_the_text_and_tokenizations_differ():
    teacher, student = _toks()
    rng = random.Random(1)
    differ = 0
    for text in [_random_text(rng) for _ in range(60)] + [TEXT]:
        t_ids, s_ids, ends, spans = aligned_chunks(text, teacher, student)
        raw = text.encode()
        assert spans[0][0] == 0 and spans[-1][1] == len(raw)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert b"".join(raw[a:b] for a, b in spans) == raw
        assert ends[-1] == (len(t_ids), len(s_ids))
        starts = [(0, 0), *ends[:-1]]
        assert all(t2 > t1 and s2 > s1 for (t1, s1), (t2, s2) in zip(starts, ends, strict=True))  # no empty chunk
        differ += len(t_ids) != len(s_ids)
    assert differ > 10  # the two vocabularies really tokenize differently, so alignment is exercised


def test_chunk_logprob_is_the_sum_of_its_token_logprobs():
    torch.manual_seed(0)
    lp = -torch.rand(2, 9) * 3
    ends = torch.tensor([[2, 3, 7, 9], [4, 5, 5, 5]])  # row 1: two chunks then padding (repeated last end)
    got = chunk_logprobs(lp, ends)
    want = torch.tensor([[lp[0, :2].sum(), lp[0, 2:3].sum(), lp[0, 3:7].sum(), lp[0, 7:9].sum()],
                         [lp[1, :4].sum(), lp[1, 4:5].sum(), 0.0, 0.0]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _binary_kl(t: float, s: float, tau: float = 1.0, eps: float = 1e-6) -> float:
    pt, ps = math.exp(t / tau - eps), math.exp(s / tau - eps)
    return pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))


def test_alm_loss_formula_zero_when_equal_and_grows_with_divergence():
    t = torch.tensor([[-0.3, -2.0, -7.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert alm_loss(t.clone(), t, mask).item() == pytest.approx(0.0, abs=1e-7)
    s = torch.tensor([[-0.9, -1.0, -9.0]])
    for tau in (1.0, 2.5):
        want = sum(_binary_kl(a, b, tau) for a, b in zip(t[0].tolist(), s[0].tolist(), strict=True)) / 3
        assert alm_loss(s, t, mask, temperature=tau).item() == pytest.approx(want, rel=1e-4)
    t1 = torch.tensor([[-1.0]])
    one = torch.ones(1, 1, dtype=torch.bool)
    for sign in (1, -1):  # student below and above the teacher
        values = [alm_loss(t1 + sign * d * (0.9 if sign < 0 else 1.0), t1, one).item()
                  for d in (0.0, 0.1, 0.3, 0.6, 0.9)]
        assert values[0] < 1e-7 and all(a < b for a, b in zip(values, values[1:], strict=False))


def test_masked_chunks_do_not_contribute_and_only_the_student_gets_gradient():
    t_tok = (-torch.rand(2, 8) * 2).requires_grad_(True)
    s_tok = (-torch.rand(2, 8) * 2).requires_grad_(True)
    ends = torch.tensor([[3, 5, 8], [2, 6, 6]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss = alm_terms(s_tok, t_tok, ends, ends, mask)["alm"]
    loss.backward()
    assert t_tok.grad is None and s_tok.grad is not None and s_tok.grad.abs().sum() > 0
    t_chunk_grad = chunk_logprobs(t_tok.detach(), ends).requires_grad_(True)  # alm_loss itself detaches too
    alm_loss(chunk_logprobs(s_tok, ends), t_chunk_grad, mask).backward()
    assert t_chunk_grad.grad is None
    assert torch.all(s_tok.grad[1, 6:] == 0)  # tokens only in the masked (padding) chunk
    # garbage in masked chunks (even inf/nan) changes neither the loss nor the gradient
    s_chunk = chunk_logprobs(s_tok.detach(), ends).requires_grad_(True)
    t_chunk = chunk_logprobs(t_tok.detach(), ends)
    junk_s, junk_t = s_chunk.detach().clone(), t_chunk.clone()
    junk_s[1, 2], junk_t[1, 2] = float("-inf"), float("nan")
    junk_s.requires_grad_(True)
    a, b = alm_loss(s_chunk, t_chunk, mask), alm_loss(junk_s, junk_t, mask)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    (ga,), (gb,) = torch.autograd.grad(a, s_chunk), torch.autograd.grad(b, junk_s)
    assert torch.isfinite(gb).all() and gb[1, 2] == 0
    torch.testing.assert_close(ga, gb)
    # a masked mean: the same chunks in a wider padded batch give the same loss
    wide = torch.cat([s_chunk.detach(), torch.full((2, 3), -5.0)], 1)
    wide_t = torch.cat([t_chunk, torch.full((2, 3), -1.0)], 1)
    wide_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    assert alm_loss(wide, wide_t, wide_mask).item() == pytest.approx(a.item(), rel=1e-6)


@pytest.mark.parametrize("swap", [False, True])
def test_alm_batch_truncates_to_chunks_complete_in_both(swap):
    teacher, student = _toks()[::-1] if swap else _toks()  # either side may run out of room first
    texts = [TEXT, "short é🙂 text", TEXT[40:200]]
    block = 24
    batch = alm_batch(texts, teacher, student, block)
    b, n_c = batch["chunk_mask"].shape
    assert b == 3 and batch["t_ids"].shape[1] <= block and batch["s_ids"].shape[1] <= block
    for i, text in enumerate(texts):
        t_ids, s_ids, ends, _ = aligned_chunks(text, teacher, student)
        kt, ks = min(len(t_ids), block - 1), min(len(s_ids), block - 1)
        assert batch["t_ids"][i, 0] == teacher.eos_id and batch["s_ids"][i, 0] == student.eos_id
        assert batch["t_ids"][i, 1:1 + kt].tolist() == t_ids[:kt]
        assert batch["s_ids"][i, 1:1 + ks].tolist() == s_ids[:ks]
        assert int(batch["t_attention_mask"][i].sum()) == kt + 1 and int(batch["s_attention_mask"][i].sum()) == ks + 1
        kept = [(te, se) for te, se in ends if te <= kt and se <= ks]
        assert kept == ends[:len(kept)]  # a prefix of the full text's chunks
        n = int(batch["chunk_mask"][i].sum())
        assert n == len(kept) and bool(batch["chunk_mask"][i, :n].all())
        assert list(zip(batch["t_ends"][i, :n].tolist(), batch["s_ends"][i, :n].tolist(), strict=True)) == kept
        pad_t, pad_s = batch["t_ends"][i, n:], batch["s_ends"][i, n:]  # padding chunks are empty: end repeated
        last_t, last_s = kept[-1] if kept else (0, 0)
        assert bool((pad_t == last_t).all()) and bool((pad_s == last_s).all())
        if len(kept) < len(ends):  # the first dropped chunk really is incomplete on one side
            te, se = ends[len(kept)]
            assert te > kt or se > ks
    assert batch["chunk_mask"][0].sum() < len(aligned_chunks(TEXT, teacher, student)[2])  # truncation happened


def test_alm_batch_end_to_end_loss_from_model_logits():
    """Logits -> token log-probs -> chunk log-probs: equal chunk likelihoods give 0, student gradient only."""
    teacher, student = _toks()
    batch = alm_batch(["hello wörld 🙂", TEXT[:80]], teacher, student, 64)
    torch.manual_seed(0)
    t_logits = torch.randn(*batch["t_ids"].shape, teacher.vocab_size)
    s_logits = torch.randn(*batch["s_ids"].shape, student.vocab_size, requires_grad=True)
    t_lp, s_lp = token_logprobs(t_logits, batch["t_ids"]), token_logprobs(s_logits, batch["s_ids"])
    loss = alm_terms(s_lp, t_lp, batch["s_ends"], batch["t_ends"], batch["chunk_mask"])["alm"]
    loss.backward()
    assert loss.item() > 0 and s_logits.grad.abs().sum() > 0
    # a student that reproduces the teacher's chunk likelihoods has zero loss
    t_chunk = chunk_logprobs(t_lp, batch["t_ends"])
    assert alm_loss(t_chunk, t_chunk, batch["chunk_mask"]).item() == pytest.approx(0.0, abs=1e-7)
    manual = token_logprobs(t_logits, batch["t_ids"])[0, :3].sum()
    want = torch.log_softmax(t_logits[0, :3], -1).gather(1, batch["t_ids"][0, 1:4, None]).sum()
    torch.testing.assert_close(manual, want)


def test_alm_is_registered_as_a_cross_tokenizer_method():
    from kdlab.errors import ConfigError
    from kdlab.text.losses import LM_METHODS, create_lm_method

    assert "alm" in LM_METHODS and LM_METHODS.entry("alm").tags["same_vocab"] is False
    params = LM_METHODS.validate("alm", {"temperature": 2.0})
    assert params == {"temperature": 2.0, "kd_weight": 1.0}
    with pytest.raises(ConfigError):
        LM_METHODS.validate("alm", {"temperature": 0.0})
    method = create_lm_method("alm", {"kd_weight": 3.0})
    assert method.same_vocab is False
    s, t = -torch.rand(1, 6), -torch.rand(1, 6)
    ends, mask = torch.tensor([[2, 6]]), torch.ones(1, 2, dtype=torch.bool)
    same = method.terms_from_logprobs(s, s.clone(), ends, ends, mask)
    assert set(same) == {"alm"} and same["alm"].item() == pytest.approx(0.0, abs=1e-7)
    got = method.terms_from_logprobs(s, t, ends, ends, mask)["alm"]
    assert got.item() == pytest.approx(3.0 * alm_terms(s, t, ends, ends, mask)["alm"].item(), rel=1e-6)
    with pytest.raises(ConfigError, match="terms_from_logprobs"):
        method.terms(torch.zeros(2, 5), torch.zeros(2, 5))


class _Widths:
    """A fake byte-level tokenizer: cuts the utf-8 bytes into tokens of the given widths (cycled); a token's id is
    its width, so token_bytes is the identity."""

    eos_id = 0

    def __init__(self, widths):
        self.widths = list(widths)

    def encode(self, text):
        n, out = len(text.encode("utf-8")), []
        while sum(out) < n:
            out.append(min(self.widths[len(out) % len(self.widths)], n - sum(out)))
        return out

    def token_bytes(self, ids):
        return list(ids)


def test_chunk_ends_when_the_two_tokenizations_cross():
    """Boundaries that interleave both ways (neither tokenization refines the other): the chunk ends are exactly
    the common cut points, counted in tokens on each side."""
    t, s = _Widths([2]), _Widths([3])
    t_ids, s_ids, ends, spans = aligned_chunks("abcdefghijklm", t, s)  # 13 bytes: cuts 2,4,..,12,13 and 3,..,12,13
    assert ends == [(3, 2), (6, 4), (7, 5)] and spans == [(0, 6), (6, 12), (12, 13)]
    rng = random.Random(3)
    for _ in range(200):
        t = _Widths([rng.randint(1, 5) for _ in range(rng.randint(1, 4))])
        s = _Widths([rng.randint(1, 5) for _ in range(rng.randint(1, 4))])
        text = "x" * rng.randint(1, 40)
        t_ids, s_ids, ends, spans = aligned_chunks(text, t, s)
        t_cut = [sum(t_ids[:i + 1]) for i in range(len(t_ids))]
        s_cut = [sum(s_ids[:i + 1]) for i in range(len(s_ids))]
        shared = sorted(set(t_cut) & set(s_cut))
        assert [end for _, end in spans] == shared
        assert ends == [(t_cut.index(c) + 1, s_cut.index(c) + 1) for c in shared]


def test_empty_text_has_no_tokens_and_no_chunks():
    teacher, student = _toks()
    assert aligned_chunks("", teacher, student) == ([], [], [], [])


def test_shape_errors_name_each_wrong_input():
    from kdlab.errors import ShapeError

    with pytest.raises(ShapeError, match="logits must be"):
        token_logprobs(torch.zeros(1, 4, 5), torch.zeros(1, 3, dtype=torch.long))  # ids shorter than logits
    lp = torch.zeros(2, 6)
    with pytest.raises(ShapeError, match="token_lp must be"):
        chunk_logprobs(lp, torch.tensor([[2, 6]]))  # one row of ends for two rows of tokens
    with pytest.raises(ShapeError, match="only 6 tokens"):
        chunk_logprobs(lp, torch.tensor([[1, 7], [2, 6]]))  # only the largest end is out of range
    s = torch.zeros(1, 3)
    with pytest.raises(ShapeError, match="share a shape"):
        alm_loss(s, s, torch.ones(1, 2, dtype=torch.bool))  # only the mask differs


def test_temperature_must_be_positive_and_defaults_to_one():
    from kdlab.errors import ConfigError

    t, s = torch.tensor([[-0.3, -2.0]]), torch.tensor([[-0.9, -1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ConfigError, match="temperature"):
        alm_loss(s, t, mask, temperature=0.0)
    want = (_binary_kl(-0.3, -0.9) + _binary_kl(-2.0, -1.0)) / 2
    assert alm_loss(s, t, mask).item() == pytest.approx(want, rel=1e-5)


def _binary_kl64(t: float, s: float, eps: float) -> float:
    """The binarised KL in float64 with the stable log(1 - p) (expm1), for likelihoods close to 1."""
    pt = math.exp(t - eps)
    l1t, l1s = math.log(-math.expm1(t - eps)), math.log(-math.expm1(s - eps))
    return pt * ((t - eps) - (s - eps)) + (1 - pt) * (l1t - l1s)


def test_chunks_of_likelihood_near_one_stay_accurate():
    """log(1 - p) for p close to 1 must come from expm1: 1 - exp(x) in float32 loses digits there (measured:
    0.1% off for a student chunk at log p = -1e-6; expm1 stays within 1e-6 of the float64 value)."""
    one = torch.ones(1, 1, dtype=torch.bool)
    for t, s in ((-1.0, -1e-6), (-0.1, -3e-6), (-1e-6, -0.5)):
        got = alm_loss(torch.tensor([[s]]), torch.tensor([[t]]), one).item()
        assert got == pytest.approx(_binary_kl64(t, s, 1e-6), rel=2e-5)


def test_certain_chunks_and_rounding_above_zero_give_a_finite_loss():
    """A chunk log-likelihood of exactly 0 (p = 1) or slightly above 0 (float rounding of a sum) is treated as
    p = 1 - eps, on either side: finite, and the same as 0."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    other = torch.tensor([[-1.0, -0.5]])
    for value in (0.0, 1e-7, 0.3):
        certain = torch.full((1, 2), value)
        for s, t in ((certain, other), (other, certain)):
            got = alm_loss(s, t, mask).item()
            assert math.isfinite(got)
            zero = torch.zeros(1, 2)
            ref = alm_loss(zero, t, mask) if s is certain else alm_loss(s, zero, mask)
            assert got == pytest.approx(ref.item(), rel=1e-6)
    want = (_binary_kl64(0.0, -1.0, 1e-6) + _binary_kl64(0.0, -0.5, 1e-6)) / 2
    assert alm_loss(other, torch.zeros(1, 2), mask).item() == pytest.approx(want, rel=1e-4)


def test_masked_chunks_are_harmless_without_eps():
    """eps = 0 is the plain binarised KL; masked chunks (whatever they hold) must still not turn it into NaN."""
    t = torch.tensor([[-0.3, -2.0, 0.0, 0.0]])
    s = torch.tensor([[-0.9, -1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False, False]])
    loss = alm_loss(s, t, mask, eps=0.0)
    want = (_binary_kl(-0.3, -0.9, eps=0.0) + _binary_kl(-2.0, -1.0, eps=0.0)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all() and torch.all(s.grad[0, 2:] == 0)


def test_all_masked_loss_is_zero_with_a_zero_gradient():
    s = torch.tensor([[-0.5, -2.0]], requires_grad=True)
    loss = alm_loss(s, torch.tensor([[-1.0, -1.0]]), torch.zeros(1, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(s.grad, torch.zeros(1, 2))


def test_alm_batch_smallest_block_and_at_least_one_chunk_column():
    from kdlab.errors import ConfigError

    one = _Widths([1])
    batch = alm_batch(["ab", "c"], one, one, 2)  # one start token + one text token: the first byte is a chunk
    assert batch["t_ids"].tolist() == [[0, 1], [0, 1]] and batch["chunk_mask"].tolist() == [[True], [True]]
    assert batch["t_ends"].tolist() == [[1], [1]] and batch["s_ends"].tolist() == [[1], [1]]
    with pytest.raises(ConfigError, match="block_size"):
        alm_batch(["ab"], one, one, 1)
    batch = alm_batch(["abcd", "xyz"], one, _Widths([3]), 3)  # student's first token never fits
    assert batch["chunk_mask"].tolist() == [[False], [False]] and batch["t_ends"].shape == (2, 1)
    assert alm_loss(torch.zeros(2, 1), torch.zeros(2, 1), batch["chunk_mask"]).item() == 0.0
    batch = alm_batch(["a", "b"], one, one, 8)  # one chunk per text: C = 1
    assert batch["chunk_mask"].shape == (2, 1) and bool(batch["chunk_mask"].all())
