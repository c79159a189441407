"""How an ``lm_distill`` run runs (imported when one starts, so ``kdlab.jobs`` loads without the ``text`` extra):
corpus, tokenizers, the cached teacher and no-KD student, the method's mode, training with checkpoints and
telemetry, then the artifacts ``kdlab.jobs.lm_distill`` reads."""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd
import torch

from kdlab.errors import ConfigError
from kdlab.jobs.lm_distill import (
    EVAL_FILE,
    MIXTURE_FILE,
    SAMPLES_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    TOKENS_FILE,
    check_vocab,
)
from kdlab.runs.job import JobContext
from kdlab.text import (
    LM_METHODS,
    ALMData,
    Corpus,
    CorpusSplits,
    LMTrainConfig,
    TextTokenizer,
    TrainState,
    build_topk_cache,
    cached_lm,
    continue_ids,
    create_lm,
    create_lm_method,
    evaluate_lm,
    load_corpus,
    load_lm,
    make_blocks,
    mode_of,
    save_lm,
    token_divergence,
    train_lm,
    train_tokenizer,
    transplant_tokenizer,
    vocab_of,
)


def run(ctx: JobContext) -> dict[str, float]:
    p = ctx.params
    method = create_lm_method(p["method"], p["method_params"], where="params.method")
    mode = mode_of(method)
    check_vocab(p, method, LM_METHODS)
    ctx.progress(0, 1, "loading the corpus")
    corpus = load_corpus(p["corpus"], path=p["path"] or None, domains=p["domains"] or None,
                         max_domains=p["max_domains"] or None, max_bytes=int(p["max_mb"] * 1e6))
    if corpus.skipped:
        ctx.log(f"corpus: skipped {', '.join(f'{n} {why}' for why, n in sorted(corpus.skipped.items()))}",
                "warning")
    splits = _with_validation(ctx, corpus.split(val=0.1, test=0.1, seed=0))
    domains = corpus.domains()
    device = ctx.device
    teacher, t_tok, t_meta = _teacher(ctx, p, splits, domains)
    s_tok = t_tok if not p["student_vocab"] or (p["student_vocab"] == p["teacher_vocab"] and not
                                                 p["teacher_path"]) else train_tokenizer(splits.train,
                                                                                         p["student_vocab"])
    same = s_tok is t_tok
    blocks = {name: make_blocks(getattr(splits, name), s_tok, p["block_size"], domains=domains,
                                max_bytes_per_domain=p["eval_kb"] * 1000 if name != "train" else None)
              for name in ("train", "val", "test")}
    for name in ("train", "test"):
        if not len(blocks[name]):
            raise ConfigError.at("params.max_mb", f"the {name} split of corpus {corpus.name!r} holds no text "
                                 f"({len(getattr(splits, name).docs)} documents); use more text (max_mb) or "
                                 "more documents")
    t_test = blocks["test"] if same else make_blocks(splits.test, t_tok, p["block_size"], domains=domains,
                                                     max_bytes_per_domain=p["eval_kb"] * 1000)
    cfg = _config(p, device)
    baseline = None
    if p["baseline"] or mode == "omp":
        baseline, _ = cached_lm(_student_key(p, s_tok, splits, "none"),
                                lambda: _train_plain(ctx, p, s_tok, blocks, cfg, "no-KD student"))
    kd_teacher = teacher
    if mode == "omp":  # the teacher, training-free, in the student's tokenizer
        ctx.progress(0, 1, "transplanting the teacher to the student's tokenizer (OMP)")
        kd_teacher = transplant_tokenizer(teacher, t_tok, s_tok, baseline.get_input_embeddings().weight.detach(),
                                          k=method.hp["anchors"]).to(device)
    if mode == "seq_kd":
        blocks["train"] = _teacher_generations(ctx, teacher, blocks["train"], method.hp, p["seed"], device)
    topk = None
    if p["topk"]:
        ctx.progress(0, 1, f"caching the teacher's top-{p['topk']} log-probs")
        topk = build_topk_cache(teacher, blocks["train"], p["topk"], ctx.run_dir / "topk",
                                key=f"{t_meta.get('key')}-{p['block_size']}-{p['seed']}", device=device,
                                batch_size=p["batch_size"],
                                progress=lambda d, n: ctx.progress(d, n, "caching teacher top-k"))
    student, state = _student(ctx, p, s_tok)
    alm = ALMData(t_tok, s_tok, p["block_size"], p["ce_weight"]) if mode == "alm" else None
    t_train = time.perf_counter()
    state = train_lm(student, blocks["train"], cfg, teacher=kd_teacher, method=method,
                     val_blocks=blocks["val"], topk=topk, alm=alm, state=state,
                     on_step=_Telemetry(ctx, p, student, blocks["val"]),
                     checkpoint_every=p["checkpoint_every"],
                     on_checkpoint=lambda st: _checkpoint(ctx, student, s_tok, st),
                     should_stop=ctx.cancelled)
    ctx.check_cancel()
    train_s = time.perf_counter() - t_train
    ctx.progress(0, 1, "evaluating")
    models = {"teacher": (teacher, t_test)}
    if mode == "omp":
        models["teacher (OMP transplant)"] = (kd_teacher, blocks["test"])
    models["student"] = (student, blocks["test"])
    if baseline is not None:
        models["no-KD student"] = (baseline.to(device), blocks["test"])
    shared = vocab_of(kd_teacher) == vocab_of(student) and mode != "alm"
    table = _evaluate(p, device, kd_teacher if shared else None, models)
    art = ctx.run_dir / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    table.to_csv(art / EVAL_FILE, index=False)
    if shared:
        text = p["text"] or _default_text(splits.test)
        token_divergence(student, kd_teacher, s_tok, text, device=device).to_csv(art / TOKENS_FILE, index=False)
    if state.ddk:
        hist = state.ddk["history"]
        every = method.hp.get("every", 1)
        pd.DataFrame([{"step": i * every, "domain": d, "weight": w} for i, ws in enumerate(hist)
                      for d, w in zip(domains, ws, strict=True)]).to_csv(art / MIXTURE_FILE, index=False)
    (art / SAMPLES_FILE).write_text(json.dumps(_samples({"teacher": (teacher, t_tok), "student": (student, s_tok)},
                                                        splits.test, p, device)))
    save_lm(student, ctx.run_dir / "student")
    s_tok.save(ctx.run_dir / "student")
    summary = {"params": dict(p), "mode": mode, "domains": domains, "teacher": t_meta,
               "train_s": train_s, "s_per_step": train_s / max(1, p["steps"]),
               "tokens_per_s": p["steps"] * p["batch_size"] * p["block_size"] / max(train_s, 1e-9),
               "teacher_vocab": vocab_of(teacher), "student_vocab": vocab_of(student),
               "student_params": sum(x.numel() for x in student.parameters()),
               "teacher_params": sum(x.numel() for x in teacher.parameters()),
               "skipped": corpus.skipped, "topk_cache_bytes": topk.nbytes() if topk else 0}
    (art / SUMMARY_FILE).write_text(json.dumps(summary, default=str))
    ctx.progress(1, 1, "done")
    return _summary_numbers(table)


def _student(ctx: JobContext, p: Mapping[str, Any], s_tok: TextTokenizer):
    ckpt = ctx.run_dir / "checkpoint"
    if ctx.resume and (ckpt / STATE_FILE).is_file():
        state = TrainState(**torch.load(ckpt / STATE_FILE, weights_only=True))
        if ctx.recording:
            dropped = ctx.store.truncate_metrics(ctx.run_id, state.step)
            ctx.log(f"resuming after step {state.step}; dropped {dropped} metric rows written after it")
        return load_lm(ckpt, where="checkpoint"), state
    if ctx.resume and ctx.recording:
        ctx.store.truncate_metrics(ctx.run_id, -1)
        ctx.log("no checkpoint to resume from: starting over", "warning")
    shutil.rmtree(ckpt, ignore_errors=True)
    torch.manual_seed(p["seed"])
    return create_lm(p["student_arch"], s_tok.vocab_size, s_tok.eos_id, layers=p["student_layers"],
                     width=p["student_width"], heads=4, context=p["block_size"] + 1), None


def _config(p: Mapping[str, Any], device: str) -> LMTrainConfig:
    hp = dict(p["method_params"])
    return LMTrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], ce_weight=p["ce_weight"],
                         seed=p["seed"], device=device, mixture="ddk" if p["method"] == "ddk" else p["mixture"],
                         ddk_alpha=hp.get("alpha", 0.5), ddk_every=hp.get("every", 50),
                         lmbda=hp.get("lmbda", 0.0) if p["method"] == "on_policy" else 0.0,
                         gen_temperature=hp.get("gen_temperature", 1.0))


def _teacher(ctx: JobContext, p: Mapping[str, Any], splits, domains) -> tuple[Any, TextTokenizer, dict]:
    """The teacher and its tokenizer: the user's folder, or trained on the corpus once per configuration."""
    if p["teacher_path"]:
        return load_lm(p["teacher_path"], where="params.teacher_path"), TextTokenizer.load(p["teacher_path"]), \
            {"source": p["teacher_path"], "key": p["teacher_path"]}
    ctx.progress(0, 1, "training the tokenizer")
    tok = train_tokenizer(splits.train, p["teacher_vocab"])
    config = {"what": "teacher", "corpus": splits.train.fingerprint(), "tok": tok.vocab_size,
              **{k: p[k] for k in ("teacher_arch", "teacher_layers", "teacher_width", "teacher_steps",
                                   "block_size", "batch_size", "lr")}}

    def train() -> tuple[Any, dict]:
        blocks = make_blocks(splits.train, tok, p["block_size"], domains=domains)
        torch.manual_seed(0)
        model = create_lm(p["teacher_arch"], tok.vocab_size, tok.eos_id, layers=p["teacher_layers"],
                          width=p["teacher_width"], heads=4, context=p["block_size"] + 1)
        t0 = time.perf_counter()
        cfg = LMTrainConfig(steps=p["teacher_steps"], batch_size=p["batch_size"], lr=p["lr"], seed=0,
                            device=ctx.device)
        train_lm(model, blocks, cfg, on_step=_phase(ctx, "teacher", cfg.steps), should_stop=ctx.cancelled)
        ctx.check_cancel()
        return model.cpu(), {"train_time_s": time.perf_counter() - t0}

    from kdlab.text.cache import model_key

    model, meta = cached_lm(config, train)
    return model.to(ctx.device), tok, {**meta, "key": model_key(config)}


def _student_key(p: Mapping[str, Any], tok: TextTokenizer, splits, method: str) -> dict[str, Any]:
    return {"what": "student", "method": method, "corpus": splits.train.fingerprint(), "tok": tok.vocab_size,
            **{k: p[k] for k in ("student_arch", "student_layers", "student_width", "steps", "block_size",
                                 "batch_size", "lr", "seed")}}


def _train_plain(ctx: JobContext, p, tok: TextTokenizer, blocks, cfg: LMTrainConfig, who: str):
    torch.manual_seed(p["seed"])
    model = create_lm(p["student_arch"], tok.vocab_size, tok.eos_id, layers=p["student_layers"],
                      width=p["student_width"], heads=4, context=p["block_size"] + 1)
    t0 = time.perf_counter()
    plain = LMTrainConfig(**{**asdict(cfg), "ce_weight": 1.0, "mixture": "natural", "lmbda": 0.0})
    train_lm(model, blocks["train"], plain, on_step=_phase(ctx, who, cfg.steps), should_stop=ctx.cancelled)
    ctx.check_cancel()
    return model.cpu(), {"train_time_s": time.perf_counter() - t0}


def _phase(ctx: JobContext, who: str, total: int):
    def report(step: int, values: Mapping[str, float]) -> None:
        ctx.progress(step, total, f"training the {who}: loss {values.get('loss/total', float('nan')):.3f}")

    return report


class _Telemetry:
    """Every step's loss terms to the store (per-term telemetry), validation bits per byte every ``eval_every``."""

    def __init__(self, ctx: JobContext, p: Mapping[str, Any], student, val):
        self.ctx, self.p, self.student, self.val = ctx, p, student, val

    def __call__(self, step: int, values: Mapping[str, float]) -> None:
        self.ctx.metrics(step, values)
        self.ctx.progress(step, self.p["steps"], f"distilling: loss {values.get('loss/total', float('nan')):.3f}")
        every = self.p["eval_every"]
        if len(self.val) and ((every and step % every == 0) or step == self.p["steps"]):
            table = evaluate_lm(self.student, self.val, self.p["batch_size"], self.ctx.device).set_index("domain")
            self.student.train()
            self.ctx.metrics(step, {"val/bpb": float(table.loc["all", "bpb"]),
                                    "val/ppl": float(table.loc["all", "ppl"])}, kind="epoch")


def _checkpoint(ctx: JobContext, student, tok: TextTokenizer, state: TrainState) -> None:
    """The student and its training state, written through a temporary folder (a reader never sees half)."""
    tmp = ctx.run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_lm(student, tmp)
    torch.save(asdict(state), tmp / STATE_FILE)
    shutil.rmtree(ctx.run_dir / "checkpoint", ignore_errors=True)
    tmp.replace(ctx.run_dir / "checkpoint")


def _teacher_generations(ctx: JobContext, teacher, blocks, hp: Mapping[str, Any], seed: int, device: str):
    """Sequence-level KD's data: ``pool`` blocks whose first ``prompt_len`` tokens come from the corpus and the
    rest from the teacher (sampled at ``gen_temperature``); every generated token counts one byte per token's
    bytes as in the corpus (its text is the teacher's)."""
    from kdlab.text.blocks import TokenBlocks

    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(blocks), (hp["pool"],), generator=gen)
    prompt = min(hp["prompt_len"], blocks.block_size - 1)
    out = []
    for start in range(0, len(idx), 32):
        ctx.progress(start, len(idx), "teacher generations (sequence-level KD)")
        ids = blocks.ids[idx[start:start + 32], :prompt].to(device)
        out.append(continue_ids(teacher, ids, blocks.block_size + 1 - prompt, hp["gen_temperature"],
                                seed=seed + start).cpu())
        ctx.check_cancel()
    ids = torch.cat(out)
    return TokenBlocks(ids, torch.ones_like(ids, dtype=torch.int32), blocks.domain[idx], blocks.domains)


def _evaluate(p, device, teacher, models: Mapping[str, tuple[Any, Any]]) -> pd.DataFrame:
    """Per-domain test metrics of every model on its own tokenizer's blocks (agreement and KL against the
    teacher where they share a vocabulary)."""
    frames = []
    for name, (model, blocks) in models.items():
        ref = teacher if teacher is not None and "teacher" not in name else None
        table = evaluate_lm(model, blocks, p["batch_size"], device, teacher=ref)
        frames.append(table.assign(model=name))
    return pd.concat(frames, ignore_index=True)


def _summary_numbers(table: pd.DataFrame) -> dict[str, float]:
    out = {}
    for _, row in table[table["domain"] == "all"].iterrows():
        name = row["model"].replace(" ", "_")
        out[f"test/bpb/{name}"] = float(row["bpb"])
        if "agreement" in row and pd.notna(row["agreement"]):
            out[f"test/agreement/{name}"] = float(row["agreement"])
    return out


def _default_text(test) -> str:
    docs = sorted(test.docs, key=lambda d: d.name)
    return docs[0].text[:1500] if docs else ""


def _samples(models: Mapping[str, tuple[Any, TextTokenizer]], test, p, device) -> list[dict[str, str]]:
    """A continuation of two test prompts by each model (sampled at temperature 0.8, seeded)."""
    docs = sorted(test.docs, key=lambda d: d.name)[:2]
    out = []
    for doc in docs:
        prompt = doc.text[:200]
        row = {"prompt": prompt}
        for name, (model, tok) in models.items():
            ids = torch.tensor([tok.encode(prompt)[-(p["block_size"] // 2):] or [tok.eos_id]], device=device)
            new = continue_ids(model, ids, min(48, p["block_size"] // 2), 0.8, seed=p["seed"])
            row[name] = tok.decode(new[0, ids.shape[1]:].tolist())
        out.append(row)
    return out


def _with_validation(ctx: JobContext, splits: CorpusSplits) -> CorpusSplits:
    """``splits`` with validation text in every domain that has 3 or more training documents: where the hashes put
    none there, the domain's first training document (by name) moves to validation, so DDK sees every domain's
    gap and the validation curve exists on small corpora; the log says which domains lent one."""
    val = list(splits.val.docs)
    have = {d.domain for d in val}
    train = []
    lent = []
    for domain, docs in sorted(splits.train.by_domain().items()):
        docs = sorted(docs, key=lambda d: d.name)
        if domain not in have and len(docs) >= 3:
            val.append(docs[0])
            lent.append(domain)
            docs = docs[1:]
        train.extend(docs)
    if lent:
        ctx.log(f"validation text: one training document of {', '.join(lent)} moved to the validation split "
                "(the hashed split gave those domains none)")
    if not val:
        ctx.log("no validation text (the corpus is too small): val/bpb is not recorded", "warning")
    return CorpusSplits(Corpus(splits.train.name, train, splits.train.skipped),
                        Corpus(splits.val.name, val, splits.val.skipped), splits.test)
