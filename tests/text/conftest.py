"""Fixtures of the language-model tests."""
from __future__ import annotations

import pytest

from kdlab.text.corpus import load_corpus
from kdlab.text.tokenize import train_tokenizer


@pytest.fixture(scope="session")
def tok():
    """A 300-token byte-level BPE trained on two stdlib domains (not cached on disk)."""
    return train_tokenizer(load_corpus("stdlib", max_domains=2, max_bytes=200_000), 300, cache=False)
