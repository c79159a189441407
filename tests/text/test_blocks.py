"""Token blocks: each domain's token stream cut into blocks that overlap by exactly one token (every token after a
domain's first is predicted once), exact byte accounting (an end of text is one byte), padding masked; the block
sampler follows its mixture, never draws a weight-0 domain, repeats per seed and resumes from its state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.text.blocks import BlockSampler, make_blocks
from kdlab.text.corpus import Corpus, Document, from_texts, load_corpus

L = 16


@pytest.fixture(scope="module")
def corpus():
    """Three domains: two of stdlib code and one of non-ASCII prose (multi-byte characters split across tokens)."""
    base = load_corpus("stdlib", max_domains=2, max_bytes=30_000)
    intl = [Document(f"intl/{i}", "intl", t) for i, t in
            enumerate(["café crème brûlée " * 20, "中文字符和日本語 😀👍🏽 " * 15, "naïve façade"])]
    return Corpus("mix", base.docs + intl, {})


def _stream(corpus: Corpus, tok, domain: str) -> list[int]:
    """The domain's documents (by name) joined by end-of-text, tokenized here independently of make_blocks."""
    out: list[int] = []
    for doc in sorted(corpus.by_domain()[domain], key=lambda d: d.name):
        out += tok.encode(doc.text) + [tok.eos_id]
    return out


def test_blocks_overlap_by_one_and_cover_each_stream_once(corpus, tok):
    b = make_blocks(corpus, tok, L)
    assert b.block_size == L and b.ids.shape[1] == L + 1 and b.domains == corpus.domains()
    for di, d in enumerate(b.domains):
        rows = torch.nonzero(b.domain == di).flatten()
        ids, mask = b.ids[rows], b.mask[rows]
        # consecutive blocks share exactly one token: the last of one is the first of the next
        assert torch.equal(ids[1:, 0], ids[:-1, -1])
        # the first token, then every predicted (masked-in) token once, is the domain's stream
        rebuilt = [int(ids[0, 0])] + ids[:, 1:][mask].tolist()
        assert rebuilt == _stream(corpus, tok, d)
        # only the last block has padding, and only at its end
        assert bool(mask[:-1].all())
        m_last = mask[-1].tolist()
        assert m_last == sorted(m_last, reverse=True)


def test_bytes_are_the_texts_utf8_bytes_plus_one_per_end_of_text(corpus, tok):
    b = make_blocks(corpus, tok, L)
    for di, d in enumerate(b.domains):
        docs = corpus.by_domain()[d]
        rows = torch.nonzero(b.domain == di).flatten()
        nb = b.nbytes[rows]
        total = sum(len(doc.text.encode("utf-8")) for doc in docs) + len(docs)  # + one byte per end of text
        first = tok.token_bytes([_stream(corpus, tok, d)[0]])[0]
        predicted = int((nb[:, 1:] * b.mask[rows]).sum())
        assert predicted == total - first  # every byte counted once, the domain's first token never predicted
        assert int(nb[:, 1:].sum()) == predicted  # padding carries no bytes
        eos = b.ids[rows] == tok.eos_id
        assert set(nb[eos & (nb > 0)].tolist()) == {1}


def test_cap_domain_order_and_errors(corpus, tok):
    capped = make_blocks(corpus, tok, L, max_bytes_per_domain=100)
    for di, d in enumerate(capped.domains):
        rows = torch.nonzero(capped.domain == di).flatten()
        n_tokens = 1 + int(capped.mask[rows].sum())
        stream = _stream(corpus, tok, d)
        nb = [1 if t == tok.eos_id else n for t, n in zip(stream, tok.token_bytes(stream), strict=True)]
        assert sum(nb[:n_tokens]) <= 100 < sum(nb[:n_tokens + 1])  # the longest prefix within the cap
        assert int(capped.nbytes[rows].sum()) - (int(capped.nbytes[rows[1:], 0].sum())) == sum(nb[:n_tokens])
    order = ["zzz", "intl", *corpus.domains()[:0]]
    sub = make_blocks(corpus, tok, L, domains=order)
    assert sub.domains == order and set(sub.domain.tolist()) == {1}
    assert sub.counts() == {"zzz": 0, "intl": len(sub)}
    with pytest.raises(ConfigError, match="block_size"):
        make_blocks(corpus, tok, 1)
    empty = make_blocks(corpus, tok, L, domains=["nothing"])
    assert len(empty) == 0 and empty.ids.shape == (0, L + 1)
    took = capped.take([2, 0])
    assert torch.equal(took.ids, capped.ids[[2, 0]]) and took.domains == capped.domains


@pytest.fixture(scope="module")
def three(tok):
    """Three domains of different sizes."""
    docs = [Document("a/0", "a", "x = 1\n" * 8), Document("b/0", "b", "def f(y):\n    return y\n" * 6),
            Document("c/0", "c", "import os, sys\nprint(os.sep)\n" * 20)]
    return make_blocks(Corpus("three", docs, {}), tok, 8)


def test_sampler_follows_the_mixture(three):
    counts = three.counts()
    s = BlockSampler(three, seed=1)
    n = 30_000
    w = torch.tensor([0.2, 0.0, 0.8])
    idx = s.sample(n, w)
    got = torch.bincount(three.domain[idx], minlength=3).double()
    assert got[1] == 0  # a weight-0 domain is never drawn
    exp = w.double() * n
    chi2 = float(((got[[0, 2]] - exp[[0, 2]]) ** 2 / exp[[0, 2]]).sum())
    assert chi2 < 15.0  # 1 degree of freedom: p ~ 1e-4
    # within a domain, blocks are uniform
    c_blocks = three.domain[idx] == 2
    per_block = torch.bincount(idx[c_blocks], minlength=len(three))[three.domain == 2].double()
    e = per_block.sum() / counts["c"]
    dof = counts["c"] - 1
    assert float(((per_block - e) ** 2 / e).sum()) < dof + 5 * (2 * dof) ** 0.5  # about 5 sigma
    # the natural mixture is proportional to blocks
    n_blocks = torch.tensor([counts[d] for d in "abc"], dtype=torch.float64)
    assert torch.allclose(s.natural(), n_blocks / n_blocks.sum())
    nat = torch.bincount(three.domain[s.sample(n)], minlength=3).double() / n
    assert torch.allclose(nat, s.natural(), atol=0.015)
    with pytest.raises(ConfigError, match="weight 0"):
        s.sample(4, torch.zeros(3))


def test_sampler_repeats_per_seed_and_resumes(three):
    a, b, c = BlockSampler(three, 5), BlockSampler(three, 5), BlockSampler(three, 6)
    assert torch.equal(a.sample(64), b.sample(64))
    assert not torch.equal(BlockSampler(three, 5).sample(64), c.sample(64))
    a.sample(7)
    state = a.state()
    after = a.sample(50, torch.tensor([0.5, 0.3, 0.2]))
    fresh = BlockSampler(three, 999)
    fresh.load_state(state)
    assert torch.equal(fresh.sample(50, torch.tensor([0.5, 0.3, 0.2])), after)


def test_sampler_skips_domains_without_blocks(tok):
    docs = [Document("a/0", "a", "x = 1\n" * 8), Document("b/0", "b", "y = 2\n" * 8)]
    blocks = make_blocks(Corpus("c", docs, {}), tok, 4, domains=["a", "empty", "b"])
    s = BlockSampler(blocks, 0)
    assert s.available.tolist() == [True, False, True]
    assert torch.allclose(s.uniform(), torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    drawn = blocks.domain[s.sample(2000, torch.tensor([1.0, 5.0, 1.0]))]
    assert 1 not in drawn.tolist() and np.isclose(float((drawn == 0).double().mean()), 0.5, atol=0.05)
    with pytest.raises(ConfigError):
        s.sample(3, torch.tensor([0.0, 1.0, 0.0]))


def test_from_texts_single_doc_blocks(tok):
    c = from_texts(["ab"])
    b = make_blocks(c, tok, 4)
    assert int(b.nbytes[:, 1:][b.mask].sum()) + tok.token_bytes([int(b.ids[0, 0])])[0] == 3


def test_block_count_is_the_fewest_that_predict_every_token(tok):
    """A stream of n tokens needs ceil((n - 1) / L) blocks: no block is only padding, none is missing; the
    smallest allowed block size (2) works."""
    c = from_texts(["x = 1\n"])  # 6 tokens + end of text: n = 7, so n - 1 = 6 predicted tokens
    n = len(tok.encode("x = 1\n")) + 1
    assert n == 7
    for size, want in ((2, 3), (3, 2), (4, 2), (6, 1), (7, 1), (9, 1)):
        b = make_blocks(c, tok, size)
        assert len(b) == want, size
        assert want * size >= n - 1 > (want - 1) * size  # the fewest blocks covering the predicted tokens
        assert int(b.mask.sum()) == n - 1 and bool(b.mask.any(1).all()), size  # each block predicts something
        assert b.ids.shape == (want, size + 1) and b.nbytes.shape == (want, size + 1)
    assert bool(make_blocks(c, tok, 6).mask.all())  # 6 predicted tokens fill one block of 6 exactly: no padding


def test_a_one_token_document_makes_one_block(tok):
    """The shortest stream that predicts anything: one token and the end of text (2 tokens) is one block."""
    b = make_blocks(from_texts(["x"]), tok, 2)
    assert len(b) == 1 and b.counts() == {"text": 1}
    assert b.ids[0, :2].tolist() == [tok.encode("x")[0], tok.eos_id]
    assert b.mask.tolist() == [[True, False]]
    assert b.nbytes[0].tolist() == [1, 1, 0]


def test_an_empty_result_has_the_shapes_and_dtypes_of_a_full_one(corpus, tok):
    full = make_blocks(corpus, tok, L)
    empty = make_blocks(corpus, tok, L, domains=["nothing"])
    assert len(empty) == 0 and empty.counts() == {"nothing": 0}
    for name in ("ids", "nbytes", "domain"):
        got, ref = getattr(empty, name), getattr(full, name)
        assert got.dtype == ref.dtype, name
        assert got.shape == (0, *ref.shape[1:]), name
    assert empty.mask.shape == (0, L) and empty.block_size == L


def test_sampler_draws_a_domain_with_a_single_block(tok):
    docs = [Document("one/0", "one", "x"), Document("many/0", "many", "x = 1\n" * 8)]
    blocks = make_blocks(Corpus("c", docs, {}), tok, 4, domains=["one", "many"])
    assert blocks.counts()["one"] == 1
    s = BlockSampler(blocks, 0)
    assert s.available.tolist() == [True, True]
    assert torch.allclose(s.uniform(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    only = int(torch.nonzero(blocks.domain == 0).flatten())
    assert s.sample(20, torch.tensor([1.0, 0.0])).tolist() == [only] * 20
