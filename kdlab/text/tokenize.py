"""Byte-level BPE tokenizers: training on a ``Corpus`` (cached on disk, deterministic) and ``TextTokenizer``, a
``tokenizers.Tokenizer`` with the byte accounting, readable token strings and offsets that distillation needs."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kdlab.errors import ConfigError
from kdlab.paths import cache_dir
from kdlab.text.corpus import Corpus, cap_bytes

EOS = "<|endoftext|>"
#: other end-of-text spellings looked for when a loaded tokenizer has no ``<|endoftext|>``
_EOS_CANDIDATES = (EOS, "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")
#: bumped when training changes, so old cache entries are not reused
_CACHE_VERSION = "bpe-v1"
#: byte -> printable character of GPT-2's byte-level alphabet (what ByteLevel tokens are spelled with)
_BYTE_OF_CHAR: dict[str, int] = {}


def _byte_table() -> dict[str, int]:
    """Printable character -> byte of the byte-level alphabet (GPT-2's ``bytes_to_unicode`` inverted)."""
    if not _BYTE_OF_CHAR:
        keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
            list(range(ord("®"), ord("ÿ") + 1))
        chars = list(keep)
        n = 0
        for b in range(256):
            if b not in keep:
                keep.append(b)
                chars.append(256 + n)
                n += 1
        _BYTE_OF_CHAR.update({chr(c): b for b, c in zip(keep, chars, strict=True)})
    return _BYTE_OF_CHAR


def _ids(ids: Any) -> list[int]:
    """``ids`` (a list, tuple, numpy array or tensor of token ids) as a list of ints."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ids]


class TextTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` with what kdlab needs: exact per-token UTF-8 byte counts (byte-level
    BPE), readable token strings, character offsets, and an end-of-text id."""

    def __init__(self, tok: Tokenizer, name: str = "bpe", eos_token: str | None = None):
        self.tok = tok
        self.name = name
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        for candidate in ((eos_token,) if eos_token else ()) + _EOS_CANDIDATES:
            eid = tok.token_to_id(candidate)
            if eid is not None:
                self.eos_id, self.eos_token = eid, candidate
                break
        else:
            raise ConfigError.at("tokenizer", f"{name!r} has no end-of-text token; looked for "
                                 f"{', '.join(repr(c) for c in ((eos_token,) if eos_token else ()) + _EOS_CANDIDATES)}")
        self._bytes: list[bytes] | None = None

    def __repr__(self) -> str:
        return f"TextTokenizer({self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"

    def __len__(self) -> int:
        return self.vocab_size

    # ------------------------------------------------------------------------------------------- encode
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added; ``<|endoftext|>`` written in the text is one token)."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Token ids of each text (in parallel inside ``tokenizers``)."""
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Any) -> str:
        """The text of ``ids`` (special tokens kept, so ``decode(encode(t)) == t`` for byte-level BPE)."""
        return self.tok.decode(_ids(ids), skip_special_tokens=False)

    def offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's (start, end) character offsets in ``text``.

        A token holding only part of a multi-byte character reports that whole character's span (so spans of
        neighbouring tokens can overlap there); use ``token_bytes`` for exact byte boundaries."""
        enc = self.tok.encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    # ------------------------------------------------------------------------------------------- bytes
    def _token_bytes_table(self) -> list[bytes]:
        """The bytes each vocabulary id stands for, computed once.

        Byte-level tokens map each character back to its byte (exact); added tokens are their UTF-8 content;
        a token of another kind (not byte-level: SentencePiece, WordPiece) is the UTF-8 of its decoded text."""
        if self._bytes is None:
            table = _byte_table()
            added = {i: t.content for i, t in self.tok.get_added_tokens_decoder().items()}
            out: list[bytes] = []
            for i in range(self.vocab_size):
                if i in added:
                    out.append(added[i].encode("utf-8"))
                    continue
                piece = self.tok.id_to_token(i)
                if piece is not None and piece and all(c in table for c in piece):
                    out.append(bytes(table[c] for c in piece))
                else:
                    out.append(self.tok.decode([i], skip_special_tokens=False).encode("utf-8"))
            self._bytes = out
        return self._bytes

    def token_bytes(self, ids: Any) -> list[int]:
        """UTF-8 bytes each token stands for; for byte-level BPE they sum to ``len(text.encode())`` of its text."""
        table = self._token_bytes_table()
        return [len(table[i]) for i in _ids(ids)]

    def token_strings(self, ids: Any) -> list[str]:
        """Readable text of each token: whole UTF-8 characters as themselves, bytes of a character split across
        tokens escaped as ``\\xNN`` (e.g. ``'\\xf0\\x9f'`` for the first half of an emoji)."""
        table = self._token_bytes_table()
        return [table[i].decode("utf-8", errors="backslashreplace") for i in _ids(ids)]

    # ------------------------------------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` (and a ``tokenizer_config.json`` so transformers' ``AutoTokenizer`` reads the
        folder too); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tok.save(str(folder / "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": self.eos_token,
                  "bos_token": self.eos_token, "unk_token": self.eos_token, "model_max_length": 1_000_000_000,
                  "clean_up_tokenization_spaces": False}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return folder

    @classmethod
    def load(cls, folder_or_file: str | os.PathLike, name: str | None = None) -> TextTokenizer:
        """Read a ``tokenizer.json`` file, or a folder holding one (a kdlab save or a transformers tokenizer
        folder; its ``tokenizer_config.json`` names the end-of-text token)."""
        path = Path(folder_or_file).expanduser()
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            what = "has no tokenizer.json (a slow-only transformers tokenizer: load it with AutoTokenizer and " \
                   "save_pretrained it again to get one)" if path.is_dir() else "does not exist"
            raise ConfigError.at("tokenizer", f"{str(path)!r} {what}")
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises its own Exception subclass for bad JSON
            raise ConfigError.at("tokenizer", f"{str(file)!r} is not a tokenizers JSON file: {e}") from None
        eos = None
        config = file.parent / "tokenizer_config.json"
        if config.is_file():
            try:
                eos = json.loads(config.read_text()).get("eos_token")
            except (ValueError, OSError, AttributeError):
                eos = None
            if isinstance(eos, dict):
                eos = eos.get("content")
        label = name or (path.name if path.is_dir() else path.parent.name or path.stem)
        return cls(tok, label, eos if isinstance(eos, str) else None)

    @classmethod
    def from_hf(cls, hf_tokenizer: Any, name: str | None = None) -> TextTokenizer:
        """Wrap a transformers fast tokenizer (its ``backend_tokenizer`` and ``eos_token``)."""
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError.at("tokenizer", f"{type(hf_tokenizer).__name__} is not a fast tokenizer "
                                 "(no backend_tokenizer); use a PreTrainedTokenizerFast")
        return cls(backend, name or getattr(hf_tokenizer, "name_or_path", "") or "hf",
                   getattr(hf_tokenizer, "eos_token", None))


# ----------------------------------------------------------------------------------------------- training
def _new_bpe() -> Tokenizer:
    """An untrained byte-level BPE tokenizer (GPT-2 style: ByteLevel pre-tokenizer and decoder, no prefix space)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _check_int(where: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in [low, high], else ConfigError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError.at(where, f"expected an integer in [{low}, {high}], got {value!r}")
    return value


def tokenizer_cache_key(corpus: Corpus, vocab_size: int, min_frequency: int) -> str:
    """The cache file stem: the corpus fingerprint, vocab_size, min_frequency and the training version."""
    h = hashlib.sha256(f"{_CACHE_VERSION}\0{corpus.fingerprint()}\0{vocab_size}\0{min_frequency}".encode())
    return f"bpe{vocab_size}-f{min_frequency}-{h.hexdigest()[:24]}"


def train_tokenizer(corpus: Corpus, vocab_size: int, *, min_frequency: int = 2, cache: bool = True,
                    max_bytes: int | None = None) -> TextTokenizer:
    """Train a byte-level BPE tokenizer on ``corpus`` (``<|endoftext|>`` is id 0, the 256 bytes follow).

    ``max_bytes`` trains on a deterministic part of the corpus (documents by name, round-robin over domains,
    ``kdlab.text.corpus.cap_bytes``) for speed: BPE statistics settle long before the whole stdlib is read.
    With ``cache`` the result is stored under ``kdlab.paths.cache_dir("tokenizers")``, keyed by the fingerprint
    of the text trained on, ``vocab_size`` and ``min_frequency``. Training is deterministic (same inputs, same
    merges). A corpus too small to make ``vocab_size`` tokens gives a smaller vocabulary (see ``vocab_size``)."""
    vocab_size = _check_int("vocab_size", vocab_size, 257, 1_000_000)
    min_frequency = _check_int("min_frequency", min_frequency, 1, 1_000_000_000)
    if max_bytes is not None:
        max_bytes = _check_int("max_bytes", max_bytes, 1, 2**62)
        docs, _ = cap_bytes(corpus.docs, max_bytes)
        if not docs:
            raise ConfigError.at("max_bytes", f"{max_bytes} bytes hold no whole document of corpus {corpus.name!r}")
        corpus = Corpus(corpus.name, docs, dict(corpus.skipped))
    if not corpus.docs:
        raise ConfigError.at("corpus", f"corpus {corpus.name!r} has no documents to train a tokenizer on")
    name = f"bpe{vocab_size}-{corpus.name}"
    key = tokenizer_cache_key(corpus, vocab_size, min_frequency)
    file = cache_dir("tokenizers") / f"{key}.json" if cache else None
    if file is not None and file.is_file():
        try:
            return TextTokenizer(Tokenizer.from_file(str(file)), name)
        except Exception:  # a damaged cache entry: train again and overwrite it
            pass
    tok = _new_bpe()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    docs = sorted(corpus.docs, key=lambda d: d.name)
    tok.train_from_iterator((d.text for d in docs), trainer=trainer, length=len(docs))
    if file is not None:
        _atomic_save(tok, file)
    return TextTokenizer(tok, name)


def _atomic_save(tok: Tokenizer, file: Path) -> None:
    """Write ``tok`` to ``file`` through a temporary file, so a reader never sees half a cache entry."""
    fd, tmp = tempfile.mkstemp(prefix=file.stem, suffix=".tmp", dir=file.parent)
    os.close(fd)
    try:
        tok.save(tmp)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

