"""A tokenized corpus as fixed blocks of tokens, by domain: what LM training samples from and what evaluation
walks through (each token after a domain's first is predicted exactly once)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdlab.errors import ConfigError
from kdlab.text.corpus import Corpus


@dataclass
class TokenBlocks:
    """``ids`` [n, L+1] token blocks; ``nbytes`` [n, L+1] the UTF-8 bytes each token stands for (0 on padding);
    ``domain`` [n] the index of each block's domain in ``domains``. Block ``i`` predicts ``ids[i, 1:]``."""

    ids: torch.Tensor
    nbytes: torch.Tensor
    domain: torch.Tensor
    domains: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def block_size(self) -> int:
        return self.ids.shape[1] - 1

    @property
    def mask(self) -> torch.Tensor:
        """[n, L] bool: which predicted positions are real tokens (not the padding of a domain's last block)."""
        return self.nbytes[:, 1:] > 0

    def counts(self) -> dict[str, int]:
        """Blocks per domain."""
        n = torch.bincount(self.domain, minlength=len(self.domains)).tolist()
        return dict(zip(self.domains, n, strict=True))

    def take(self, index: torch.Tensor | list[int]) -> TokenBlocks:
        index = torch.as_tensor(index, dtype=torch.long)
        return TokenBlocks(self.ids[index], self.nbytes[index], self.domain[index], self.domains)


def make_blocks(corpus: Corpus, tok, block_size: int, max_bytes_per_domain: int | None = None,
                domains: list[str] | None = None) -> TokenBlocks:
    """``corpus`` tokenized with ``tok`` (documents joined by its end-of-text token, in name order) and cut into
    blocks of ``block_size + 1`` tokens overlapping by one, per domain; ``domains`` fixes the domain order (a
    split lacking some keeps their index). ``max_bytes_per_domain`` keeps each domain's first tokens up to that
    many bytes of text (the same text whatever the tokenizer, so models with different tokenizers are compared on
    the same bytes)."""
    if block_size < 2:
        raise ConfigError(f"block_size: {block_size} is too small; use at least 2 tokens")
    domains = list(domains if domains is not None else corpus.domains())
    ids_rows, byte_rows, dom_rows = [], [], []
    for d, docs in corpus.by_domain().items():
        if d not in domains:
            continue
        docs = sorted(docs, key=lambda doc: doc.name)
        encoded = tok.encode_batch([doc.text for doc in docs])
        stream: list[int] = []
        stream_bytes: list[int] = []
        for ids in encoded:
            stream.extend(ids)
            stream_bytes.extend(tok.token_bytes(ids))
            stream.append(tok.eos_id)
            stream_bytes.append(1)  # the end of text joining documents counts as one byte (not its 13 characters)
        ids = np.asarray(stream, dtype=np.int64)
        nb = np.asarray(stream_bytes, dtype=np.int32)
        if max_bytes_per_domain:
            keep = int(np.searchsorted(np.cumsum(nb), int(max_bytes_per_domain), side="right"))
            ids, nb = ids[:keep], nb[:keep]
        if len(ids) < 2:
            continue
        n_blocks = -(-(len(ids) - 1) // block_size)
        pad = n_blocks * block_size + 1 - len(ids)
        ids = np.concatenate([ids, np.full(pad, tok.eos_id, dtype=np.int64)])
        nb = np.concatenate([nb, np.zeros(pad, dtype=np.int32)])
        starts = np.arange(n_blocks) * block_size
        window = starts[:, None] + np.arange(block_size + 1)[None, :]
        ids_rows.append(ids[window])
        byte_rows.append(nb[window])
        dom_rows.append(np.full(n_blocks, domains.index(d), dtype=np.int64))
    if not ids_rows:  # an empty split (a small corpus' validation part): no blocks
        return TokenBlocks(torch.zeros(0, block_size + 1, dtype=torch.long), torch.zeros(0, block_size + 1,
                           dtype=torch.int32), torch.zeros(0, dtype=torch.long), domains)
    return TokenBlocks(torch.from_numpy(np.concatenate(ids_rows)), torch.from_numpy(np.concatenate(byte_rows)),
                       torch.from_numpy(np.concatenate(dom_rows)), domains)


class BlockSampler:
    """Draws batches of blocks: a domain per row from the mixture ``weights`` (over domains that have blocks),
    then a block of that domain uniformly; seeded, so a run's batches repeat."""

    def __init__(self, blocks: TokenBlocks, seed: int = 0):
        self.blocks = blocks
        self.by_domain = [torch.nonzero(blocks.domain == i).flatten() for i in range(len(blocks.domains))]
        self.available = torch.tensor([len(b) > 0 for b in self.by_domain])
        self.gen = torch.Generator().manual_seed(int(seed))

    def natural(self) -> torch.Tensor:
        """The corpus' own mixture: each domain in proportion to its blocks."""
        n = torch.tensor([len(b) for b in self.by_domain], dtype=torch.float64)
        return n / n.sum()

    def uniform(self) -> torch.Tensor:
        w = self.available.double()
        return w / w.sum()

    def sample(self, batch_size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Indices of ``batch_size`` blocks."""
        w = (self.natural() if weights is None else torch.as_tensor(weights, dtype=torch.float64)) * self.available
        if not float(w.sum()) > 0:
            raise ConfigError("mixture: every domain with blocks has weight 0")
        doms = torch.multinomial(w, batch_size, replacement=True, generator=self.gen)
        out = torch.empty(batch_size, dtype=torch.long)
        for j, d in enumerate(doms.tolist()):
            pool = self.by_domain[d]
            out[j] = pool[torch.randint(len(pool), (1,), generator=self.gen)]
        return out

    def state(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
