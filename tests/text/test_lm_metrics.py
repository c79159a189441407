"""evaluate_lm against a plain per-token loop: bits per byte = summed NLL / ln 2 / summed bytes per domain, padding
masked, agreement 1 and KL 0 against itself, KL >= 0 and equal to its definition, a uniform model's bpb =
log2(V) tokens / bytes; token_divergence's per-token KL and log-probs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kdlab.text.blocks import make_blocks
from kdlab.text.corpus import Corpus, Document
from kdlab.text.metrics import evaluate_lm, token_divergence
from kdlab.text.models import create_lm

L = 16


@pytest.fixture(scope="module")
def corpus():
    docs = [Document("code/a", "code", "def f(x):\n    return x * 2\n" * 3), Document("code/b", "code", "y = [1, 2]\n"),
            Document("prose/a", "prose", "café crème — naïve 😀 text. " * 3)]
    return Corpus("tiny", docs, {})


@pytest.fixture(scope="module")
def blocks(corpus, tok):
    b = make_blocks(corpus, tok, L)
    assert not bool(b.mask.all())  # the test needs padded blocks
    return b


def _lm(tok, seed, context=L + 1):
    torch.manual_seed(seed)
    return create_lm("gpt2", tok.vocab_size, tok.eos_id, layers=2, width=32, heads=4, context=context).eval()


def _logp(model, row: list[int]) -> list[list[float]]:
    """Log-softmax of one row's logits, done by hand in float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([row])).logits[0].double().tolist()
    out = []
    for z in logits:
        m = max(z)
        lse = m + math.log(sum(math.exp(v - m) for v in z))
        out.append([v - lse for v in z])
    return out


def _reference(model, blocks, teacher=None):
    """Per-domain sums with a plain loop over blocks and positions."""
    acc = {d: dict(nll=0.0, tokens=0, bytes=0, agree=0, kl=0.0) for d in blocks.domains}
    for i in range(len(blocks)):
        row = blocks.ids[i].tolist()
        d = blocks.domains[int(blocks.domain[i])]
        s = _logp(model, row[:-1])
        t = _logp(teacher, row[:-1]) if teacher is not None else None
        for j in range(L):
            nb = int(blocks.nbytes[i, j + 1])
            if nb == 0:
                continue
            a = acc[d]
            a["nll"] -= s[j][row[j + 1]]
            a["tokens"] += 1
            a["bytes"] += nb
            if t is not None:
                a["agree"] += int(max(range(len(s[j])), key=s[j].__getitem__) == max(range(len(t[j])),
                                                                                     key=t[j].__getitem__))
                a["kl"] += sum(math.exp(tv) * (tv - sv) for tv, sv in zip(t[j], s[j], strict=True))
    return acc


def test_bpb_matches_a_plain_loop(tok, corpus, blocks):
    model, teacher = _lm(tok, 0), _lm(tok, 1)
    table = evaluate_lm(model, blocks, batch_size=3, teacher=teacher).set_index("domain")
    ref = _reference(model, blocks, teacher)
    assert list(table.index) == [*blocks.domains, "all"]
    for d, a in ref.items():
        r = table.loc[d]
        assert r["tokens"] == a["tokens"] and r["bytes"] == a["bytes"]
        assert r["nll"] == pytest.approx(a["nll"] / a["tokens"], rel=1e-5)
        assert r["bpb"] == pytest.approx(a["nll"] / math.log(2) / a["bytes"], rel=1e-5)
        assert r["ppl"] == pytest.approx(math.exp(a["nll"] / a["tokens"]), rel=1e-5)
        assert r["agreement"] == pytest.approx(a["agree"] / a["tokens"])
        assert r["kl"] == pytest.approx(a["kl"] / a["tokens"], rel=1e-4, abs=1e-6) and r["kl"] > 0
        # every byte of the domain's text once (plus one per end of text), less the first token's
        text_bytes = sum(len(doc.text.encode()) + 1 for doc in corpus.by_domain()[d])
        first = blocks.ids[blocks.domain == blocks.domains.index(d)][0, 0]
        assert r["bytes"] == text_bytes - tok.token_bytes([int(first)])[0]
    all_nll = sum(a["nll"] for a in ref.values())
    all_bytes = sum(a["bytes"] for a in ref.values())
    assert table.loc["all", "bpb"] == pytest.approx(all_nll / math.log(2) / all_bytes, rel=1e-5)
    assert table.loc["all", "tokens"] == sum(a["tokens"] for a in ref.values())
    # the `all` row pools the domains' sums (not an average of their per-token means)
    all_tokens = sum(a["tokens"] for a in ref.values())
    assert table.loc["all", "kl"] == pytest.approx(sum(a["kl"] for a in ref.values()) / all_tokens, rel=1e-4)
    assert table.loc["all", "agreement"] == pytest.approx(sum(a["agree"] for a in ref.values()) / all_tokens)


def test_progress_reports_blocks_done(tok, blocks):
    calls = []
    evaluate_lm(_lm(tok, 0), blocks, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    n = len(blocks)
    assert n > 3
    assert calls == [(min(k, n), n) for k in range(3, n + 3, 3)]


def test_padding_is_masked_and_batching_does_not_matter(tok, blocks):
    model = _lm(tok, 0)
    base = evaluate_lm(model, blocks, batch_size=16)
    noisy = blocks.take(range(len(blocks)))
    noisy.ids = noisy.ids.clone()
    pad = noisy.nbytes == 0
    noisy.ids[pad] = torch.randint(1, tok.vocab_size, (int(pad.sum()),), generator=torch.Generator().manual_seed(0))
    other = evaluate_lm(model, noisy, batch_size=1)
    cols = ["tokens", "bytes", "nll", "bpb"]
    assert (base[cols] - other[cols]).abs().to_numpy().max() < 1e-5


def test_against_itself_agreement_one_kl_zero(tok, blocks):
    model = _lm(tok, 3)
    t = evaluate_lm(model, blocks, teacher=model)
    assert (t["agreement"] == 1.0).all()
    assert t["kl"].abs().max() < 1e-6


class Uniform(nn.Module):
    """All logits zero: every token has probability 1/V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.config = SimpleNamespace(n_positions=1024)

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_uniform_model_bits_per_byte(tok, blocks):
    v = tok.vocab_size
    table = evaluate_lm(Uniform(v), blocks, batch_size=2)
    for _, r in table.iterrows():
        assert r["nll"] == pytest.approx(math.log(v))
        assert r["ppl"] == pytest.approx(v)
        assert r["bpb"] == pytest.approx(math.log2(v) * r["tokens"] / r["bytes"])


class Spike(Uniform):
    """All the probability on one token: every other token costs about ``height`` nats."""

    def __init__(self, vocab: int, token: int, height: float = 1e4):
        super().__init__(vocab)
        self.token, self.height = token, height

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = self.height
        return SimpleNamespace(logits=logits)


def test_hopeless_model_perplexity_is_capped_not_overflowing(tok, blocks):
    unused = next(i for i in range(tok.vocab_size) if not bool((blocks.ids == i).any()))
    table = evaluate_lm(Spike(tok.vocab_size, unused), blocks, batch_size=4)
    for _, r in table.iterrows():
        assert r["nll"] == pytest.approx(1e4, rel=1e-3)
        assert r["bpb"] == pytest.approx(r["nll"] * r["tokens"] / math.log(2) / r["bytes"])
        assert r["ppl"] == pytest.approx(math.exp(700.0))  # e^10000 would overflow a float


def _cands(tok, logp: list[float], k: int) -> str:
    order = sorted(range(len(logp)), key=lambda i: -logp[i])[:k]
    return "  ".join(f"{tok.token_strings([i])[0]!r} {math.exp(logp[i]):.2f}" for i in order)


def test_token_divergence_candidates_and_short_texts(tok):
    s, t = _lm(tok, 0, 64), _lm(tok, 1, 64)
    text = "def g(a):\n    return a + 1\n"
    ids = tok.encode(text)
    df = token_divergence(s, t, tok, text, top=3)
    sl, tl = _logp(s, ids[:-1]), _logp(t, ids[:-1])
    for j, r in df.iterrows():
        assert r["student_top"] == _cands(tok, sl[j], 3) and r["teacher_top"] == _cands(tok, tl[j], 3)
    # two tokens: one prediction, still with `top` candidates each
    ids = tok.encode("ab")
    assert len(ids) == 2
    df = token_divergence(s, t, tok, "ab", top=3)
    assert df["position"].tolist() == [1] and df["token"].tolist() == tok.token_strings(ids)[1:]
    sl, tl = _logp(s, ids[:1]), _logp(t, ids[:1])
    assert df["student_logp"].iloc[0] == pytest.approx(sl[0][ids[1]], abs=1e-5)
    assert df["student_top"].iloc[0] == _cands(tok, sl[0], 3) and df["teacher_top"].iloc[0] == _cands(tok, tl[0], 3)
    kl = sum(math.exp(b) * (b - a) for a, b in zip(sl[0], tl[0], strict=True))
    assert df["kl"].iloc[0] == pytest.approx(kl, rel=1e-4, abs=1e-6)


def test_token_divergence_last_window_of_two_tokens(tok):
    """L + 2 tokens with a context of L + 1: a window of L + 1, then one of the last two tokens alone."""
    short, t = _lm(tok, 0), _lm(tok, 1)
    text = "def g(a):\n    return a + 1\n" * 4
    ids = tok.encode(text)[: L + 2]
    df = token_divergence(short, t, tok, text, max_tokens=L + 2)
    assert df["position"].tolist() == list(range(1, L + 2))
    sl = _logp(short, ids[:L])
    for j in range(L):
        assert df["student_logp"].iloc[j] == pytest.approx(sl[j][ids[j + 1]], abs=1e-5)
    last = _logp(short, ids[L:L + 1])[0]
    assert df["student_logp"].iloc[L] == pytest.approx(last[ids[L + 1]], abs=1e-5)


def test_token_divergence(tok):
    s, t = _lm(tok, 0, 64), _lm(tok, 1, 64)
    text = "def g(a):\n    return a + 1\n"
    ids = tok.encode(text)
    df = token_divergence(s, t, tok, text, top=3)
    assert len(df) == len(ids) - 1 and df["position"].tolist() == list(range(1, len(ids)))
    assert df["token"].tolist() == tok.token_strings(ids)[1:]
    sl, tl = _logp(s, ids[:-1]), _logp(t, ids[:-1])
    for j, r in df.iterrows():
        kl = sum(math.exp(b) * (b - a) for a, b in zip(sl[j], tl[j], strict=True))
        assert r["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6) and r["kl"] >= 0
        assert r["student_logp"] == pytest.approx(sl[j][ids[j + 1]], abs=1e-5)
        assert r["teacher_logp"] == pytest.approx(tl[j][ids[j + 1]], abs=1e-5)
        best = max(range(len(sl[j])), key=sl[j].__getitem__)
        assert r["student_top"].startswith(f"{tok.token_strings([best])[0]!r} {math.exp(sl[j][best]):.2f}")
    same = token_divergence(s, s, tok, text)
    assert same["kl"].abs().max() < 1e-6
    # a text longer than the context: windows of L + 1 tokens overlapping by one, each token predicted once,
    # every window's first prediction made from its first token alone (the context restarts)
    short = _lm(tok, 0)  # context L + 1
    long_text = text * 4
    ids = tok.encode(long_text)
    assert len(ids) > 2 * (L + 1)
    df = token_divergence(short, t, tok, long_text)
    assert len(df) == len(ids) - 1 and df["token"].tolist() == tok.token_strings(ids)[1:]
    for start in (0, L, 2 * L):
        window = ids[start:start + L + 1]
        sl = _logp(short, window[:-1])
        for j in range(len(window) - 1):
            assert df["student_logp"].iloc[start + j] == pytest.approx(sl[j][window[j + 1]], abs=1e-5)
    assert len(token_divergence(short, t, tok, long_text, max_tokens=10)) == 9
    assert len(token_divergence(s, t, tok, "x")) == 0
