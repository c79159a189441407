"""The teacher's top-k cache: values are the teacher's top-k log-probs (fp16), indices its top-k tokens, the cache
is reused when its key matches and rebuilt when it changes, and get() answers rows in the requested order
(unsorted, repeated)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdlab.text.blocks import make_blocks
from kdlab.text.corpus import load_corpus
from kdlab.text.models import create_lm
from kdlab.text.tokenize import train_tokenizer
from kdlab.text.topk_cache import TopKCache, build_topk_cache

L, K = 16, 5


@pytest.fixture(scope="module")
def setup():
    corpus = load_corpus("stdlib", max_domains=2, max_bytes=200_000)
    tok = train_tokenizer(corpus, 300, cache=False)
    blocks = make_blocks(corpus, tok, L, max_bytes_per_domain=400)
    torch.manual_seed(0)
    teacher = create_lm("gpt2", tok.vocab_size, tok.eos_id, layers=2, width=32, heads=4, context=L + 1).eval()
    with torch.no_grad():  # sharper than at initialisation, so the top-k are well separated
        teacher.lm_head.weight.mul_(30)
    return blocks, teacher


def test_values_and_indices_are_the_teachers_topk(setup, tmp_path):
    blocks, teacher = setup
    cache = build_topk_cache(teacher, blocks, K, tmp_path / "c", key="a", batch_size=3)
    assert isinstance(cache, TopKCache) and cache.k == K
    got = cache.get(torch.arange(len(blocks)))
    assert got.values.shape == (len(blocks), L, K) and got.values.dtype == torch.float32
    with torch.no_grad():
        logp = F.log_softmax(teacher(input_ids=blocks.ids[:, :-1]).logits.double(), -1)
    assert torch.allclose(got.values.double(), logp.gather(-1, got.indices), atol=2e-2, rtol=1e-3)
    top = logp.topk(K, -1)
    assert torch.allclose(got.values.double(), top.values, atol=2e-2, rtol=1e-3)
    same = (got.indices == top.indices).double().mean()
    assert same > 0.99  # ties within fp32 noise may swap order
    assert (got.values[..., :-1] >= got.values[..., 1:]).all()  # sorted, largest first
    assert cache.nbytes() == len(blocks) * L * K * (2 + 4)


def test_get_returns_rows_in_the_requested_order(setup, tmp_path):
    blocks, teacher = setup
    cache = build_topk_cache(teacher, blocks, K, tmp_path / "c", key="a")
    full = cache.get(torch.arange(len(blocks)))
    idx = torch.tensor([5, 1, 5, 0, 3, 1])
    got = cache.get(idx)
    assert torch.equal(got.values, full.values[idx]) and torch.equal(got.indices, full.indices[idx])
    assert torch.equal(cache.get(np.array([2])).indices, full.indices[[2]])


def test_reused_when_the_key_matches_rebuilt_when_it_changes(setup, tmp_path):
    blocks, teacher = setup
    folder = tmp_path / "c"
    build_topk_cache(teacher, blocks, K, folder, key="a")
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = teacher

        def forward(self, **kw):
            calls.append(1)
            return self.inner(**kw)

    build_topk_cache(Spy(), blocks, K, folder, key="a")
    assert calls == []  # reused: no teacher forward
    other = create_lm("gpt2", 300, 0, layers=1, width=32, heads=4, context=L + 1).eval()
    rebuilt = build_topk_cache(Spy(), blocks, K, folder, key="b")
    assert calls  # the key changed: computed again
    assert rebuilt.meta["key"] == "b"
    smaller = build_topk_cache(other, blocks, 2, folder, key="b")  # k is part of the key too
    assert smaller.k == 2 and smaller.get(torch.tensor([0])).values.shape == (1, L, 2)
    (folder / "topk.json").write_text("{not json")
    assert build_topk_cache(teacher, blocks, K, folder, key="a").k == K  # a damaged cache is rebuilt
