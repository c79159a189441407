"""Byte-level BPE: exact byte accounting (emoji, CJK), round trips, readable tokens, offsets, a disk cache keyed by
corpus + vocab_size + min_frequency, deterministic training, save/load (also transformers folders)."""
from __future__ import annotations

import json
import time

import pytest
from tokenizers import trainers

from kdlab.errors import ConfigError
from kdlab.text.corpus import from_texts, load_corpus
from kdlab.text.tokenize import EOS, TextTokenizer, train_tokenizer

SAMPLES = [
    "def f(x):\n    return x + 1\n",
    "héllo wörld, café crème brûlée",
    "emoji 😀👍🏽 and flags 🇩🇪 and a zero-width joiner 👩‍💻",
    "中文字符和日本語のテキスト、한국어",
    "tabs\tand\r\nwindows newlines\n\n  indented",
    f"two docs{EOS}joined by the end-of-text token",
    "combining e\u0301 and \u00a0nbsp and \ufeffbom",
    "",
]


def _bytes_of_char() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted (written out here independently of kdlab's copy)."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


@pytest.fixture(scope="module")
def corpus():
    """About 200 KB of stdlib code and pydoc prose, plus non-ASCII text so merges of multi-byte characters exist."""
    base = load_corpus("stdlib+pydoc", domains=["json", "email", "prose"], max_bytes=200_000)
    extra = from_texts({"intl/fr": "café crème " * 200, "intl/cjk": "中文字符 " * 200})
    return type(base)("mix", base.docs + extra.docs, {})


@pytest.fixture(scope="module")
def tok(corpus):
    return train_tokenizer(corpus, 400, cache=False)


def test_special_token_and_byte_alphabet(tok):
    assert tok.eos_id == 0 and tok.tok.id_to_token(0) == EOS
    assert tok.vocab_size == 400 == len(tok)
    # ids 1..256 are the 256 single bytes: every byte is encodable, nothing is unknown
    assert tok.token_bytes(range(1, 257)) == [1] * 256
    assert tok.encode(EOS) == [0] and tok.token_bytes([0]) == [len(EOS)]


@pytest.mark.parametrize("text", SAMPLES)
def test_token_bytes_are_exact_and_decode_round_trips(tok, text):
    ids = tok.encode(text)
    assert sum(tok.token_bytes(ids)) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    table = _bytes_of_char()
    joined = b"".join(EOS.encode() if i == 0 else bytes(table[c] for c in tok.tok.id_to_token(i)) for i in ids)
    assert joined == text.encode("utf-8")
    sizes = tok.token_bytes(ids)  # each token's own count, not only the sum
    assert sizes == [len(EOS.encode()) if i == 0 else len(tok.tok.id_to_token(i)) for i in ids]


def test_token_strings_are_readable(tok):
    ids = tok.encode("def f(x):")
    assert "".join(tok.token_strings(ids)) == "def f(x):"
    emoji = tok.token_strings(tok.encode("😀"))
    assert "".join(emoji) == "\\xf0\\x9f\\x98\\x80"  # one emoji, split into bytes that are not whole characters
    assert tok.token_strings(tok.encode("中")) == ["中"]  # the corpus repeats 中文字符: a whole-character token
    table = _bytes_of_char()
    for text in SAMPLES:  # every token: its bytes as text, whole characters readable, partial ones escaped
        ids = [i for i in tok.encode(text) if i != 0]
        want = [bytes(table[c] for c in tok.tok.id_to_token(i)).decode("utf-8", "backslashreplace") for i in ids]
        assert tok.token_strings(ids) == want
    assert tok.token_strings([0]) == [EOS]
    assert all("Ġ" not in s and "Ċ" not in s for s in tok.token_strings(tok.encode(" a\nb")))


def test_offsets_are_character_spans(tok):
    text = "for x in range(10):\n    print(x)"
    ids, spans = tok.offsets(text)
    assert ids == tok.encode(text)
    assert "".join(text[a:b] for a, b in spans) == text
    assert [text[a:b] for a, b in spans] == tok.token_strings(ids)
    text = "a😀b中c"
    ids, spans = tok.offsets(text)
    assert spans[0] == (0, 1) and spans[-1] == (len(text) - 1, len(text))
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert all(a1 <= a2 for (a1, _), (a2, _) in zip(spans, spans[1:], strict=False))


def test_encode_batch_and_tensor_ids(tok):
    import torch

    assert tok.encode_batch(SAMPLES) == [tok.encode(t) for t in SAMPLES]
    ids = tok.encode(SAMPLES[1])
    assert tok.decode(torch.tensor(ids)) == SAMPLES[1]
    assert tok.token_bytes(torch.tensor(ids)) == tok.token_bytes(ids)


def test_training_is_deterministic(corpus, tok):
    again = train_tokenizer(corpus, 400, cache=False)
    assert again.tok.to_str() == tok.tok.to_str()


def test_cache_is_keyed_by_corpus_vocab_size_and_min_frequency(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    folder = tmp_path / "tokenizers"
    first = train_tokenizer(corpus, 300)
    assert len(list(folder.glob("*.json"))) == 1

    def no_training(*a, **k):
        raise AssertionError("trained again instead of reading the cache")

    with monkeypatch.context() as m:
        m.setattr(trainers, "BpeTrainer", no_training)
        hit = train_tokenizer(corpus, 300)
    assert hit.tok.to_str() == first.tok.to_str() and hit.vocab_size == 300
    other = train_tokenizer(corpus, 320)
    assert other.vocab_size == 320 and len(list(folder.glob("*.json"))) == 2
    train_tokenizer(corpus, 300, min_frequency=5)
    assert len(list(folder.glob("*.json"))) == 3
    small = from_texts({"a": "abc abc abd", "b": "xyz xyz"})
    changed = from_texts({"a": "abc abc abd", "b": "xyz xyZ"})
    train_tokenizer(small, 300)
    train_tokenizer(changed, 300)
    assert len(list(folder.glob("*.json"))) == 5
    train_tokenizer(corpus, 340, cache=False)
    assert len(list(folder.glob("*.json"))) == 5
    assert not list(folder.glob("*.tmp"))


def test_max_bytes_trains_on_a_deterministic_part(corpus):
    part = train_tokenizer(corpus, 300, max_bytes=50_000, cache=False)
    from kdlab.text.corpus import Corpus, cap_bytes

    docs, _ = cap_bytes(corpus.docs, 50_000)
    direct = train_tokenizer(Corpus("mix", docs, {}), 300, cache=False)
    assert part.tok.to_str() == direct.tok.to_str()
    with pytest.raises(ConfigError, match="max_bytes"):
        train_tokenizer(corpus, 300, max_bytes=1)


def test_training_512_on_2mb_is_fast():
    c = load_corpus("stdlib+pydoc", max_bytes=2_000_000)
    assert c.n_bytes() > 1_900_000
    t0 = time.perf_counter()
    tok = train_tokenizer(c, 512, cache=False)
    elapsed = time.perf_counter() - t0
    assert tok.vocab_size == 512
    assert elapsed < 8, f"training took {elapsed:.1f} s (about 0.4 s measured)"


def test_bad_arguments(corpus):
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(corpus, 100)
    with pytest.raises(ConfigError, match="min_frequency"):
        train_tokenizer(corpus, 300, min_frequency=0)


def test_save_and_load(tok, tmp_path):
    folder = tok.save(tmp_path / "tok")
    assert (folder / "tokenizer.json").is_file()
    for source in (folder, folder / "tokenizer.json"):
        back = TextTokenizer.load(source)
        assert back.vocab_size == tok.vocab_size and back.eos_id == 0
        assert [back.encode(t) for t in SAMPLES] == [tok.encode(t) for t in SAMPLES]
    with pytest.raises(ConfigError, match="does not exist"):
        TextTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        TextTokenizer.load(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a tokenizers JSON"):
        TextTokenizer.load(tmp_path / "bad.json")


def test_transformers_folders_both_ways(tok, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok.tok, eos_token="</s>")
    hf.add_special_tokens({"eos_token": "</s>"})  # a model whose end-of-text token is not <|endoftext|>
    hf.save_pretrained(tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["eos_token"] == "</s>"
    back = TextTokenizer.load(tmp_path / "hf")
    assert back.eos_token == "</s>" and back.eos_id == hf.eos_token_id
    assert back.encode(SAMPLES[2]) == tok.encode(SAMPLES[2])
    assert sum(back.token_bytes(back.encode(SAMPLES[3]))) == len(SAMPLES[3].encode())
    wrapped = TextTokenizer.from_hf(hf)
    assert wrapped.eos_id == hf.eos_token_id
    ours = AutoTokenizer.from_pretrained(tok.save(tmp_path / "ours"))
    assert ours.encode(SAMPLES[1], add_special_tokens=False) == tok.encode(SAMPLES[1])
    assert ours.eos_token_id == 0
