"""Language-model distillation (``kdlab.text``): corpora that ship with Python, byte-level BPE tokenizers, tiny
``transformers`` causal LMs, token-level / sequence-level / on-policy / cross-tokenizer methods, DDK's domain
mixture, bits-per-byte metrics and the per-token divergence view. Jobs: ``kdlab.submit("lm_distill", ...)``."""
from __future__ import annotations

from kdlab.text.blocks import BlockSampler, TokenBlocks, make_blocks
from kdlab.text.cache import cached_lm
from kdlab.text.corpus import CORPORA, Corpus, CorpusSplits, Document, from_texts, load_corpus
from kdlab.text.cross_tokenizer import aligned_chunks, alm_batch, alm_loss, chunk_logprobs
from kdlab.text.ddk import DDKMixture
from kdlab.text.generate import continue_ids
from kdlab.text.losses import LM_METHODS, LMMethod, TopK, create_lm_method, register_lm_method, topk_methods
from kdlab.text.metrics import evaluate_lm, token_divergence
from kdlab.text.models import LM_ARCHS, create_lm, load_lm, save_lm, vocab_of
from kdlab.text.modes import mode_of
from kdlab.text.tokenize import TextTokenizer, train_tokenizer
from kdlab.text.topk_cache import TopKCache, build_topk_cache
from kdlab.text.train import ALMData, LMTrainConfig, TrainState, train_lm
from kdlab.text.transplant import omp, transplant_tokenizer

__all__ = [
    "CORPORA", "LM_ARCHS", "LM_METHODS", "ALMData", "BlockSampler", "Corpus", "CorpusSplits", "DDKMixture",
    "Document", "LMMethod", "LMTrainConfig", "TextTokenizer", "TokenBlocks", "TopK", "TopKCache", "TrainState",
    "aligned_chunks", "alm_batch", "alm_loss", "build_topk_cache", "cached_lm", "chunk_logprobs", "continue_ids",
    "create_lm", "create_lm_method", "evaluate_lm", "from_texts", "load_corpus", "load_lm", "make_blocks",
    "mode_of", "omp", "register_lm_method", "save_lm", "token_divergence", "topk_methods", "train_lm",
    "train_tokenizer", "transplant_tokenizer", "vocab_of",
]
