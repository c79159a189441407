"""The ``cka`` job: teacher x student CKA grid, agreement and 2-D embeddings of a finished training run.

Its files, under the job's run folder ``artifacts/``: ``cka.json`` (the grid, with its sample count, pool,
sample-size warning and class names), ``agreement.json`` (summary and per-class table) and ``embedding.npz``
(teacher and student embeddings, labels, agreement). ``read(run_dir)`` gives them back as a ``CKAResult``; the
report's Representations section, the dashboard page and the notebook widget all read them through it.
``cka_epochs.json`` (CKA over training, written into a training run's folder by ``CKARecorder``) is read here too.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdlab.analysis.agreement import agreement
from kdlab.analysis.cka import POOLS, cka_matrix, few_samples_warning, pool_features
from kdlab.analysis.embeddings import METHODS, embed_pair
from kdlab.jobs.source import RUN_PARAM, check_source_run, source_models
from kdlab.models.taps import declared_layers, feature_shapes
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

SPLITS = ("val", "test", "train")
CKA_FILE, AGREEMENT_FILE, EMBEDDING_FILE, EPOCHS_FILE = "cka.json", "agreement.json", "embedding.npz", "cka_epochs.json"


def default_layers(model: Any) -> list[str]:
    """A zoo model's declared stages followed by its logits layer."""
    stages = declared_layers(model, "stages")
    return stages + [p for p in declared_layers(model, "logits") if p not in stages]


@dataclass
class CKAResult:
    """What a cka job saved: the grid (``attrs``: n_samples, pool, warning), the agreement (summary fields as
    attributes, ``per_class`` table) and the embeddings (arrays by name); absent parts are None."""

    cka: pd.DataFrame | None = None
    agreement: Any = None
    embedding: dict[str, Any] | None = None
    class_names: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        return self.cka.attrs.get("warning") if self.cka is not None else None

    def figures(self, color_by: str = "class", name: str = "") -> dict[str, Any]:
        """The CKA heat map, the agreement panel and the embeddings scatter of what is present."""
        from kdlab.viz.representations import agreement_panel, cka_heatmap, embedding_scatter
        from kdlab.viz.theme import plotly_text

        prefix = f"{plotly_text(name)}: " if name else ""
        out: dict[str, Any] = {}
        if self.cka is not None:
            a = self.cka.attrs
            out["cka"] = cka_heatmap(self.cka, title=f"{prefix}CKA teacher x student ({a.get('n_samples', '?')} "
                                                     f"samples, {a.get('pool', 'flatten')})")
        if self.agreement is not None:
            out["agreement"] = agreement_panel(self.agreement, title=f"{prefix}teacher-student agreement")
        e = self.embedding
        if e is not None:
            method = str(e["method"])
            out["embeddings"] = embedding_scatter(
                e["teacher"], e["student"], e["labels"], color_by, e["agree"], self.class_names or None,
                title=f"{prefix}{method.upper()} of {plotly_text(str(e['teacher_layer']))} / "
                      f"{plotly_text(str(e['student_layer']))}", method=method)
        return out


def analyze(teacher: Any, student: Any, data: Any, teacher_layers: list[str] | None = None,
            student_layers: list[str] | None = None, pool: str = "flatten", batch_size: int = 250,
            max_samples: int = 1000, embedding: str = "pca", cache_dir: str | Path | None = None,
            progress: Any = None, device: str = "cpu") -> tuple[pd.DataFrame, Any, Any]:
    """CKA grid (default layers: declared stages + logits), agreement and embeddings of the last stages, of two
    models on ``data`` (the plain call the job makes); ``progress(done, total, message)`` along the way."""
    progress = progress or (lambda *_a: None)
    t_layers = teacher_layers or default_layers(teacher)
    s_layers = student_layers or default_layers(student)
    dims = [int(np.prod(s)) for m, ls in ((teacher, t_layers), (student, s_layers))
            for s in feature_shapes(m, ls, data.in_shape).values()] if pool == "flatten" else [0]
    n = min(max_samples, len(data))
    total = -(-n // batch_size) + 2
    t_emb = declared_layers(teacher, "embedding")[0] if not teacher_layers else t_layers[-1]
    s_emb = declared_layers(student, "embedding")[0] if not student_layers else s_layers[-1]
    seen: dict[str, list[torch.Tensor]] = {"t": [], "s": [], "ft": [], "fs": []}

    def keep(out_t: Any, out_s: Any, kept_t: dict, kept_s: dict) -> None:  # agreement and embeddings, same pass
        for key, value in (("t", out_t), ("s", out_s), ("ft", pool_features(kept_t[t_emb], "mean")),
                           ("fs", pool_features(kept_s[s_emb], "mean"))):
            seen[key].append(value.detach().to("cpu", torch.float64 if key[0] == "f" else torch.float32))

    cka = cka_matrix(teacher, student, data, t_layers, s_layers, batch_size=batch_size, pool=pool,
                     max_samples=n, device=device, on_batch=keep, keep_a=[t_emb], keep_b=[s_emb],
                     progress=lambda d, _t, _m: progress(d, total, f"CKA batch {d}/{total - 2}"))
    cka.attrs["warning"] = few_samples_warning(cka.attrs["n_samples"], max(dims)) or ""
    progress(total - 2, total, "agreement")
    agree = agreement(torch.cat(seen["t"]), torch.cat(seen["s"]), data.y[:n], list(data.classes))
    progress(total - 1, total, f"{embedding} embeddings")
    emb = embed_pair(teacher, student, data, t_emb, s_emb, method=embedding, max_samples=n, cache_dir=cache_dir,
                     features=(torch.cat(seen["ft"]).numpy(), torch.cat(seen["fs"]).numpy()))
    progress(total, total, "done")
    return cka, agree, emb


def save(folder: str | Path, cka: pd.DataFrame, agreement: Any, emb: Any, class_names: list[str]) -> None:
    """Write the three artifacts of ``analyze``'s results under ``folder/artifacts``."""
    out = Path(folder) / "artifacts"
    write_json(out / CKA_FILE, {**cka_to_json(cka), "class_names": [str(c) for c in class_names]})
    write_json(out / AGREEMENT_FILE, {"summary": agreement.summary() | {"top1": agreement.top1,
                                                                         "kl": agreement.kl},
                                      "per_class": agreement.per_class.to_dict("records")})
    tmp = out / (EMBEDDING_FILE + ".tmp.npz")
    np.savez(tmp, teacher=emb.teacher, student=emb.student, labels=emb.labels,
             agree=agreement.agree[:len(emb.labels)], method=emb.method, teacher_layer=emb.teacher_layer,
             student_layer=emb.student_layer)
    tmp.replace(out / EMBEDDING_FILE)


@register_job("cka")
class CKAJob(Job):
    """Teacher x student CKA grid, agreement and embeddings of a finished training run."""

    params = {
        "run": RUN_PARAM,
        "split": Param("val", "which split of the run's data to compare the models on", str, choices=SPLITS),
        "pool": Param("flatten", "how feature maps become vectors", str, choices=POOLS),
        "embedding": Param("pca", "2-D embedding of the last stages", str, choices=tuple(METHODS)),
        "max_samples": Param(500, "samples compared (CKA is biased with fewer samples than features)", int, 16,
                             10_000),
        "batch_size": Param(250, "samples per forward pass", int, 1, 10_000),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        return {**params, "run": check_source_run(store, params["run"], need_teacher=True)}

    def title(self, params: Mapping[str, Any]) -> str:
        return f"cka-{params.get('run') or ''}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        run = source_models(ctx, need_teacher=True)
        data = getattr(run.splits, p["split"])
        teacher, student = run.teacher.to(ctx.device), run.student.to(ctx.device)  # device: auto -> the GPU
        cka, agree, emb = analyze(teacher, student, data, pool=p["pool"], batch_size=p["batch_size"],
                                  max_samples=p["max_samples"], embedding=p["embedding"],
                                  cache_dir=ctx.run_dir / "embeddings", progress=ctx.progress, device=ctx.device)
        save(ctx.run_dir, cka, agree, emb, list(data.classes))
        values = cka.to_numpy(dtype=float)
        return {"cka/mean": float(np.nanmean(values)), "cka/logits": float(values[-1, -1]),
                "agreement/top1": float(agree.top1), "n_samples": float(cka.attrs["n_samples"])}

    def read(self, run_dir: str | Path) -> CKAResult | None:
        cka, agreement, emb = load_cka(run_dir), load_agreement(run_dir), load_embedding(run_dir)
        if cka is None and agreement is None and emb is None:
            return None
        names = list(cka.attrs.pop("class_names", [])) if cka is not None else []
        return CKAResult(cka, agreement, emb, names)


# ------------------------------------------------------------------------------------------ the format

def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=float))
    tmp.replace(path)


def cka_to_json(df: pd.DataFrame) -> dict[str, Any]:
    return {"teacher_layers": list(map(str, df.index)), "student_layers": list(map(str, df.columns)),
            "values": [[None if np.isnan(v) else float(v) for v in row] for row in df.to_numpy(dtype=float)],
            **{k: v for k, v in df.attrs.items() if isinstance(v, (str, int, float))}}


def load_cka(folder: str | Path) -> pd.DataFrame | None:
    """The CKA grid saved in ``folder/artifacts/cka.json`` (None when there is none)."""
    path = Path(folder) / "artifacts" / CKA_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    df = pd.DataFrame(np.array(d["values"], dtype=float), index=d["teacher_layers"], columns=d["student_layers"])
    df.attrs.update({k: v for k, v in d.items() if k not in ("values", "teacher_layers", "student_layers")})
    return df


def load_agreement(folder: str | Path) -> SimpleNamespace | None:
    """The saved agreement (summary fields as attributes, ``per_class`` DataFrame), or None."""
    path = Path(folder) / "artifacts" / AGREEMENT_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return SimpleNamespace(**d["summary"], per_class=pd.DataFrame(d["per_class"]))


def load_embedding(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / "artifacts" / EMBEDDING_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_epochs(folder: str | Path) -> pd.DataFrame | None:
    """CKA over training (``CKARecorder``'s ``cka_epochs.json`` in a training run's folder), or None."""
    path = Path(folder) / "artifacts" / EPOCHS_FILE
    if not path.is_file():
        return None
    return pd.DataFrame(json.loads(path.read_text())["rows"])
