"""Text corpora for language-model distillation: the Python standard library, pydoc prose, a user's folder, a
Hugging Face dataset or Python strings, as ``Document``s grouped by domain, with deterministic per-document splits."""
from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError
from kdlab.registry import Param, Registry

CORPORA = Registry("corpus")

#: folders of the standard library that are not its code (or are data the "pydoc" corpus covers): never walked
_STDLIB_EXCLUDE = ("site-packages", "dist-packages", "__pycache__", "pydoc_data",
                   os.path.join("lib2to3", "tests", "data"))
#: how much of a file is searched for a NUL byte to call it binary
_BINARY_PROBE = 8192


@dataclass(frozen=True)
class Document:
    """One text with a unique ``name`` (its split is a function of the name) and a ``domain`` (its group)."""

    name: str
    domain: str
    text: str


@dataclass
class Corpus:
    """Documents plus what was skipped while reading them (reason -> count), so nothing is dropped silently."""

    name: str
    docs: list[Document]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.docs)

    def domains(self) -> list[str]:
        """The sorted unique domains."""
        return sorted({d.domain for d in self.docs})

    def n_bytes(self) -> int:
        """UTF-8 bytes of all texts."""
        return sum(len(d.text.encode("utf-8")) for d in self.docs)

    def by_domain(self) -> dict[str, list[Document]]:
        """Documents per domain (domains sorted, documents in corpus order)."""
        out: dict[str, list[Document]] = {k: [] for k in self.domains()}
        for d in self.docs:
            out[d.domain].append(d)
        return out

    def subset(self, domains: Iterable[str]) -> Corpus:
        """The documents of ``domains``; an unknown domain raises ConfigError listing the available ones."""
        wanted = list(domains)
        if isinstance(domains, str):
            wanted = [domains]
        available = self.domains()
        missing = [d for d in wanted if d not in available]
        if missing or not wanted:
            what = f"unknown domain {missing[0]!r}" if missing else "no domain given"
            raise ConfigError.at("domains", f"{what} of corpus {self.name!r}; available: {', '.join(available)}",
                                 available)
        keep = set(wanted)
        return Corpus(self.name, [d for d in self.docs if d.domain in keep], dict(self.skipped))

    def fingerprint(self) -> str:
        """A hash of the documents (names, sizes and texts, in name order): equal corpora, equal fingerprints."""
        h = hashlib.sha256()
        for d in sorted(self.docs, key=lambda d: d.name):
            data = d.text.encode("utf-8")
            h.update(f"{d.name}\0{d.domain}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()

    def split(self, val: float = 0.05, test: float = 0.1, seed: int = 0) -> CorpusSplits:
        """Train/val/test by document, deterministic: a document's split comes from a hash of (seed, name).

        Adding documents never moves other documents, with one exception kept for evaluation: a domain with
        >= 3 documents whose hashes put none in test sends its document with the smallest test hash to test (so
        every such domain is evaluated); adding a document to that same domain can move that one document back."""
        for key, value in (("val", val), ("test", test)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError.at(key, f"expected a fraction in [0, 1), got {value!r}")
        if val + test >= 1:
            raise ConfigError.at("val", f"val + test = {val + test} leaves no training documents; keep it below 1")
        where: dict[str, str] = {}
        for doc in self.docs:
            u = _unit_hash(seed, doc.name)
            where[doc.name] = "test" if u < test else "val" if u < test + val else "train"
        if test > 0:
            for docs in self.by_domain().values():
                if len(docs) >= 3 and not any(where[d.name] == "test" for d in docs):
                    where[min(docs, key=lambda d: (_unit_hash(seed, d.name), d.name)).name] = "test"
        parts = {s: Corpus(f"{self.name}:{s}", [d for d in self.docs if where[d.name] == s], dict(self.skipped))
                 for s in ("train", "val", "test")}
        return CorpusSplits(**parts)


@dataclass
class CorpusSplits:
    """The three splits of a corpus, disjoint by document."""

    train: Corpus
    val: Corpus
    test: Corpus


def _unit_hash(seed: int, name: str) -> float:
    """A number in [0, 1) that depends on (seed, name) only (blake2b, so stable across processes and runs)."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


# ----------------------------------------------------------------------------------------------- filters
def _check_nonempty(corpus: Corpus, what: str) -> Corpus:
    """``corpus`` when it has documents, else ConfigError saying what was skipped and why."""
    if corpus.docs:
        return corpus
    if corpus.skipped:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(corpus.skipped.items()))
        raise ConfigError(f"corpus {corpus.name!r} is empty: no text documents in {what}; skipped: {why}")
    raise ConfigError(f"corpus {corpus.name!r} is empty: no text documents in {what} (nothing was found to skip)")


def _largest_domains(corpus: Corpus, n: int) -> Corpus:
    """The ``n`` domains with the most UTF-8 bytes (ties by name); the others are dropped."""
    sizes = {k: sum(len(d.text.encode("utf-8")) for d in v) for k, v in corpus.by_domain().items()}
    keep = set(sorted(sizes, key=lambda k: (-sizes[k], k))[:n])
    return Corpus(corpus.name, [d for d in corpus.docs if d.domain in keep], dict(corpus.skipped))


def cap_bytes(docs: Sequence[Document], max_bytes: int) -> tuple[list[Document], int]:
    """At most ``max_bytes`` UTF-8 bytes of ``docs``, deterministically, and how many documents did not fit.

    Documents are taken in name order, round-robin over the sorted domains (each domain keeps some); a
    document that does not fit in what is left is skipped and its domain goes on with its next one."""
    queues = {k: sorted((d for d in docs if d.domain == k), key=lambda d: d.name)
              for k in sorted({d.domain for d in docs})}
    pos = dict.fromkeys(queues, 0)
    taken: list[Document] = []
    left, dropped = max_bytes, 0
    while any(pos[k] < len(q) for k, q in queues.items()):
        for k, q in queues.items():
            if pos[k] >= len(q):
                continue
            doc = q[pos[k]]
            pos[k] += 1
            size = len(doc.text.encode("utf-8"))
            if size <= left:
                taken.append(doc)
                left -= size
            else:
                dropped += 1
    return sorted(taken, key=lambda d: d.name), dropped


def _filter(corpus: Corpus, domains: list[str] | None, max_domains: int | None, max_bytes: int | None) -> Corpus:
    """Apply ``domains``, then ``max_domains``, then ``max_bytes`` (the common options of every corpus)."""
    if domains is not None:
        corpus = corpus.subset(domains)
    if max_domains is not None:
        corpus = _largest_domains(corpus, max_domains)
    if max_bytes is not None:
        docs, dropped = cap_bytes(corpus.docs, max_bytes)
        skipped = dict(corpus.skipped)
        if dropped:
            skipped[f"over max_bytes={max_bytes}"] = dropped
        corpus = Corpus(corpus.name, docs, skipped)
    return corpus


_COMMON = {
    "domains": Param(None, "keep only these domains (unknown ones fail listing the available domains)", list),
    "max_domains": Param(None, "keep the N largest domains by bytes, drop the rest", int, low=1),
    "max_bytes": Param(None, "cap the total UTF-8 bytes: documents by name, round-robin over domains", int, low=1),
}
_PATH = {"path": Param(None, "a file or folder (hf: a dataset saved with datasets' save_to_disk)", str)}
_HF = {"text_column": Param("text", "the dataset column holding the text", str),
       "domain_column": Param(None, "an optional column giving each row's domain", str)}


# ----------------------------------------------------------------------------------------------- sources
def _read_text(path: Path, skipped: dict[str, int]) -> str | None:
    """The file's text, or None after counting why it was skipped (binary, not UTF-8, empty, unreadable)."""
    try:
        data = path.read_bytes()
    except OSError:
        skipped["unreadable"] = skipped.get("unreadable", 0) + 1
        return None
    reason = None
    if b"\0" in data[:_BINARY_PROBE]:
        reason = "binary"
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            reason = "not utf-8"
        else:
            if text.strip():
                return text
            reason = "empty"
    skipped[reason] = skipped.get(reason, 0) + 1
    return None


_STDLIB_CACHE: dict[str, tuple[tuple[Document, ...], dict[str, int]]] = {}


def _stdlib_docs() -> tuple[tuple[Document, ...], dict[str, int]]:
    """The standard library's ``.py`` files as documents, read once per process (about 30 MB, ~0.5 s)."""
    root = sysconfig.get_paths()["stdlib"]
    if root not in _STDLIB_CACHE:
        docs: list[Document] = []
        skipped: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_EXCLUDE
                                 and os.path.normpath(os.path.join(rel_dir, d)) not in _STDLIB_EXCLUDE)
            for fname in sorted(filenames):
                if not fname.endswith(".py"):
                    continue
                text = _read_text(Path(dirpath, fname), skipped)
                if text is not None:
                    rel = Path(rel_dir, fname).as_posix().removeprefix("./")
                    top = rel.split("/", 1)[0]
                    docs.append(Document(rel, top.removesuffix(".py"), text))
        _STDLIB_CACHE[root] = (tuple(sorted(docs, key=lambda d: d.name)), skipped)
    docs, skipped = _STDLIB_CACHE[root]
    return docs, dict(skipped)


def _pydoc_docs() -> list[Document]:
    """pydoc_data.topics: the language reference's topics (English prose), one document each, domain "prose"."""
    from pydoc_data.topics import topics

    return [Document(f"pydoc/{k}", "prose", v) for k, v in sorted(topics.items()) if v.strip()]


@CORPORA.register("stdlib", params=_COMMON)
def _load_stdlib(**kw: Any) -> Corpus:
    """The running interpreter's standard library .py files; domain = top-level module or package."""
    docs, skipped = _stdlib_docs()
    return _filter(Corpus("stdlib", list(docs), skipped), **kw)


@CORPORA.register("pydoc", params=_COMMON)
def _load_pydoc(**kw: Any) -> Corpus:
    """pydoc_data.topics: English prose about Python, one document per topic, domain "prose"."""
    return _filter(Corpus("pydoc", _pydoc_docs(), {}), **kw)


@CORPORA.register("stdlib+pydoc", params=_COMMON)
def _load_stdlib_pydoc(**kw: Any) -> Corpus:
    """The standard library's code domains plus pydoc's prose (domain "prose")."""
    docs, skipped = _stdlib_docs()
    return _filter(Corpus("stdlib+pydoc", [*docs, *_pydoc_docs()], skipped), **kw)


@CORPORA.register("folder", params={**_COMMON, **_PATH})
def _load_folder(path: str | None = None, **kw: Any) -> Corpus:
    """A user's text file or folder (recursively); binary and non-UTF-8 files are skipped and counted."""
    root = _existing(path)
    skipped: dict[str, int] = {}
    docs: list[Document] = []
    if root.is_file():
        text = _read_text(root, skipped)
        if text is not None:
            docs.append(Document(root.name, "text", text))
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                file = Path(dirpath, fname)
                text = _read_text(file, skipped)
                if text is not None:
                    rel = file.relative_to(root).as_posix()
                    docs.append(Document(rel, rel.split("/", 1)[0] if "/" in rel else "text", text))
    corpus = _check_nonempty(Corpus(root.name or "folder", docs, skipped), str(root))
    return _check_nonempty(_filter(corpus, **kw), f"{root} after filtering")


@CORPORA.register("hf", params={**_COMMON, **_PATH, **_HF})
def _load_hf(path: str | None = None, text_column: str = "text", domain_column: str | None = None,
             **kw: Any) -> Corpus:
    """A Hugging Face dataset saved with ``save_to_disk`` (a DatasetDict: its "train" split)."""
    import datasets

    root = _existing(path)
    try:
        ds = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError.at("path", f"{root} is not a dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ConfigError.at("path", f"{root} holds splits {sorted(ds)} but no 'train' split to read")
        ds = ds["train"]
    return corpus_from_dataset(ds, text_column, domain_column, name=root.name, **kw)


def _existing(path: str | None) -> Path:
    """``path`` as a Path that exists, else ConfigError at "path"."""
    if not path:
        raise ConfigError.at("path", "required: a file or folder to read")
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError.at("path", f"{str(p)!r} does not exist")
    return p


def corpus_from_dataset(ds: Any, text_column: str = "text", domain_column: str | None = None, *,
                        name: str = "hf", domains: list[str] | None = None, max_domains: int | None = None,
                        max_bytes: int | None = None) -> Corpus:
    """A corpus from a ``datasets.Dataset`` (rows named ``row/<index>``); empty texts are skipped and counted."""
    columns = list(getattr(ds, "column_names", None) or [])
    for key, col in (("text_column", text_column), ("domain_column", domain_column)):
        if col is not None and col not in columns:
            raise ConfigError.at(key, f"column {col!r} is not in the dataset; its columns: {', '.join(columns)}",
                                 columns)
    texts = ds[text_column]
    labels = ds[domain_column] if domain_column is not None else None
    width = len(str(max(len(texts) - 1, 0)))
    docs: list[Document] = []
    skipped: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text is None or (isinstance(text, str) and not text.strip()):
            skipped["empty"] = skipped.get("empty", 0) + 1
            continue
        if not isinstance(text, str):
            raise ConfigError.at("text_column", f"column {text_column!r} holds {type(text).__name__} "
                                 f"values (row {i}), expected strings")
        domain = "text" if labels is None else str(labels[i])
        docs.append(Document(f"row/{i:0{width}d}", domain, text))
    corpus = _check_nonempty(Corpus(name, docs, skipped), f"column {text_column!r}")
    return _check_nonempty(_filter(corpus, domains, max_domains, max_bytes), "the dataset after filtering")


def from_texts(texts: Mapping[str, str] | Sequence[str], domain: str = "text", name: str = "texts") -> Corpus:
    """A corpus from Python strings: a mapping name -> text, or a sequence (named ``text/<index>``)."""
    if isinstance(texts, str):
        raise ConfigError.at("texts", "expected a list or dict of strings, got one string")
    items = list(texts.items()) if isinstance(texts, Mapping) else \
        [(f"text/{i:0{len(str(max(len(texts) - 1, 0)))}d}", t) for i, t in enumerate(texts)]
    docs: list[Document] = []
    skipped: dict[str, int] = {}
    for key, text in items:
        if not isinstance(text, str):
            raise ConfigError.at(f"texts.{key}", f"expected a string, got {type(text).__name__}")
        if not text.strip():
            skipped["empty"] = skipped.get("empty", 0) + 1
            continue
        docs.append(Document(str(key), domain, text))
    return _check_nonempty(Corpus(name, docs, skipped), "the given texts")


def load_corpus(name: str = "stdlib", *, domains: list[str] | None = None, max_domains: int | None = None,
                max_bytes: int | None = None, path: str | None = None, text_column: str = "text",
                domain_column: str | None = None) -> Corpus:
    """Load the registered corpus ``name`` (see ``CORPORA.names()``) with its validated options.

    Options apply in order: ``domains`` (keep those), ``max_domains`` (keep the N largest by bytes),
    ``max_bytes`` (cap deterministically, see ``cap_bytes``). An empty result raises ConfigError."""
    entry = CORPORA.entry(name, "corpus")
    given = {"domains": domains, "max_domains": max_domains, "max_bytes": max_bytes, "path": path,
             "text_column": text_column, "domain_column": domain_column}
    defaults = {"text_column": "text"}
    values = {k: v for k, v in given.items() if v is not None and v != defaults.get(k)}
    params = CORPORA.validate(name, values, "corpus")
    loader: Callable[..., Corpus] = entry.obj
    return _check_nonempty(loader(**params), f"corpus {name!r} after filtering")
