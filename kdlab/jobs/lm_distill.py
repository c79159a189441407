"""The ``lm_distill`` job: a causal-LM teacher (trained on the corpus and cached, or the user's) distilled into a
student with one of ``kdlab.text``'s methods, beside the same student trained without KD.

Its files, under the run folder: ``artifacts/lm_eval.csv`` (teacher, student and no-KD student: bits per byte,
perplexity, agreement and KL per domain on the test split), ``artifacts/lm_tokens.csv`` (the token-divergence view
of one text), ``artifacts/lm_mixture.csv`` (DDK's domain mixture over steps), ``artifacts/lm_samples.json``
(generations), ``artifacts/lm_summary.json`` (configuration, sizes, speed), the student as ``student/``
(safetensors + tokenizer) and ``checkpoint/`` (the last training state; the job resumes from it).
``read``/``load_lm_artifacts`` are the one reader (``LMArtifacts``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.errors import ConfigError
from kdlab.jobs.optional import extra_module
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

EVAL_FILE, TOKENS_FILE, MIXTURE_FILE = "lm_eval.csv", "lm_tokens.csv", "lm_mixture.csv"
SAMPLES_FILE, SUMMARY_FILE, STATE_FILE = "lm_samples.json", "lm_summary.json", "train_state.pt"


@dataclass
class LMArtifacts:
    """What an ``lm_distill`` run wrote (parts missing until written stay None/empty)."""

    eval: pd.DataFrame | None = None
    tokens: pd.DataFrame | None = None
    mixture: pd.DataFrame | None = None
    samples: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def load_lm_artifacts(run_dir: str | Path) -> LMArtifacts:
    folder = Path(run_dir) / "artifacts"
    out = LMArtifacts()
    for attr, name in (("eval", EVAL_FILE), ("tokens", TOKENS_FILE), ("mixture", MIXTURE_FILE)):
        if (folder / name).is_file():
            setattr(out, attr, pd.read_csv(folder / name, keep_default_na=False, na_values=[""]))
    if (folder / SAMPLES_FILE).is_file():
        out.samples = json.loads((folder / SAMPLES_FILE).read_text())
    if (folder / SUMMARY_FILE).is_file():
        out.summary = json.loads((folder / SUMMARY_FILE).read_text())
    return out


def _arch(who: str, layers: int, width: int, vocab: int) -> dict[str, Param]:
    return {
        f"{who}_arch": Param("gpt2", f"{who} architecture (transformers)", str, choices=("gpt2", "llama")),
        f"{who}_layers": Param(layers, f"{who} transformer blocks", int, 1, 48),
        f"{who}_width": Param(width, f"{who} hidden size (a multiple of 4 heads)", int, 8, 4096),
        f"{who}_vocab": Param(vocab, f"{who} BPE vocabulary size" + (" (0: the teacher's tokenizer)"
                                                                     if who == "student" else ""), int,
                              0 if who == "student" else 257, 200_000),
    }


def _text_module(name: str = "kdlab.text") -> Any:
    """``kdlab.text`` (or a module that needs it), or ConfigError saying how to install the ``text`` extra."""
    return extra_module(name, "text", "lm_distill")


@register_job("lm_distill")
class LMDistillJob(Job):
    """Distill a causal language model (teacher -> student) on a text corpus; per-domain bits per byte."""

    resumable = True
    params = {
        "corpus": Param("stdlib", "text corpus: stdlib, pydoc, stdlib+pydoc, folder (path), hf (path)", str),
        "path": Param("", "folder, file or saved datasets.Dataset of the folder/hf corpora", str),
        "domains": Param([], "domains to keep (empty: all, then max_domains)", list),
        "max_domains": Param(8, "keep the N largest domains (0: all)", int, 0, 10_000),
        "max_mb": Param(2.0, "megabytes of text (a deterministic part; each domain keeps some)", float, 0.01, 1000.0),
        **_arch("teacher", 4, 256, 2048),
        "teacher_steps": Param(600, "training steps of the teacher (cached per configuration)", int, 1, 1_000_000),
        "teacher_path": Param("", "a local causal-LM folder (config.json + safetensors + tokenizer.json) used as the "
                                  "teacher instead of training one", str),
        **_arch("student", 2, 128, 0),
        "method": Param("forward_kl", "LM distillation method (kdlab.text.LM_METHODS)", str),
        "method_params": Param({}, "the method's parameters", dict),
        "steps": Param(300, "student training steps", int, 1, 1_000_000),
        "batch_size": Param(16, "blocks per step", int, 1, 4096),
        "block_size": Param(128, "tokens per block", int, 8, 8192),
        "lr": Param(3e-3, "peak learning rate (AdamW, warm-up then cosine)", float, 1e-6, 1.0),
        "ce_weight": Param(1.0, "weight of the student's own next-token cross-entropy", float, 0.0, 100.0),
        "mixture": Param("natural", "domain mixture of the training batches: natural (each domain by its size) or "
                                    "uniform (DDK, method 'ddk', starts uniform and follows the gap)", str,
                         choices=("natural", "uniform")),
        "topk": Param(0, "cache the teacher's top-k log-probs to disk and train from them (0: live teacher)", int,
                      0, 65_536),
        "baseline": Param(True, "also train (and cache) the same student without KD, for comparison", bool),
        "checkpoint_every": Param(50, "steps between checkpoints of the student (a killed run resumes from the "
                                       "last)", int, 1, 1_000_000),
        "eval_every": Param(100, "steps between validation evaluations (0: only at the end)", int, 0, 1_000_000),
        "eval_kb": Param(64, "kilobytes of test text evaluated per domain (the same text for every tokenizer)", int,
                         1, 1_000_000),
        "text": Param("", "text of the token-divergence view (empty: the start of a test document)", str),
        "seed": Param(0, "seed of the student, its batches and the splits", int, 0, 2**31 - 1),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        text = _text_module()
        CORPORA, LM_ARCHS, LM_METHODS = text.CORPORA, text.LM_ARCHS, text.LM_METHODS
        p = dict(params)
        CORPORA.entry(p["corpus"], where="params.corpus")
        if p["corpus"] in ("folder", "hf"):  # a user's text: unreadable or empty fails here, before any run
            text.load_corpus(p["corpus"], path=p["path"] or None, max_bytes=int(p["max_mb"] * 1e6))
        if p["teacher_path"]:  # the user's teacher: a folder that cannot be loaded fails here, before any run
            folder = Path(p["teacher_path"]).expanduser()
            missing = [what for what, ok in (("config.json", (folder / "config.json").is_file()),
                                             ("*.safetensors weights", any(folder.glob("*.safetensors"))),
                                             ("tokenizer.json", (folder / "tokenizer.json").is_file())) if not ok]
            if not folder.is_dir() or missing:
                raise ConfigError.at("params.teacher_path", f"{str(folder)!r} is not a causal-LM folder: "
                                     f"{'it does not exist' if not folder.is_dir() else 'no ' + ', no '.join(missing)}"
                                     "; save one with model.save_pretrained(folder) and tokenizer.save(folder)")
        method = text.create_lm_method(p["method"], p["method_params"], where="params.method")
        p["method_params"] = dict(method.hp)
        check_vocab(p, method, LM_METHODS)
        if p["topk"] and not LM_METHODS.entry(p["method"]).tags.get("accepts_topk"):
            raise ConfigError.at("params.topk", f"method {p['method']!r} cannot train from a cached top-k teacher; "
                                 f"methods that can: {', '.join(text.topk_methods())} (or topk: 0)")
        for who in ("teacher", "student"):
            LM_ARCHS.entry(p[f"{who}_arch"], where=f"params.{who}_arch")
            if p[f"{who}_width"] % 4:
                raise ConfigError.at(f"params.{who}_width", f"{p[f'{who}_width']} is not a multiple of the 4 "
                                     "attention heads")
        return p

    def title(self, params: Mapping[str, Any]) -> str:
        return f"lm-{params.get('method', '')}-{params.get('corpus', '')}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        return _text_module("kdlab.jobs.lm_run").run(ctx)

    def read(self, run_dir: str | Path) -> LMArtifacts | None:
        art = load_lm_artifacts(run_dir)
        return art if art.eval is not None else None


def check_vocab(p: Mapping[str, Any], method, LM_METHODS) -> None:  # noqa: N803
    """Different tokenizers need a cross-tokenizer method: stop before any training, naming them."""
    differ = bool(p["student_vocab"]) and (p["student_vocab"] != p["teacher_vocab"] or bool(p["teacher_path"]))
    if differ and method.same_vocab and p["method"] != "none":
        cross = [n for n in LM_METHODS.names() if not LM_METHODS.get(n).same_vocab]
        raise ConfigError.at("params.method", f"the teacher and the student have different vocabularies (teacher "
                             f"{p['teacher_path'] or p['teacher_vocab']}, student {p['student_vocab']} tokens), so "
                             f"{p['method']!r} cannot compare their next-token distributions; use ALM ('alm', "
                             f"cross-tokenizer likelihood matching) or 'omp' (tokenizer transplant), or give the "
                             f"student the teacher's tokenizer (student_vocab: 0)", cross)
