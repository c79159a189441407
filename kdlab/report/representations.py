"""The report's Representations section, and the artifact files it reads from a run folder.

The Representations page / notebook widget (``kdlab.ui.representations``) and ``CKARecorder`` write, under
``run.folder / "artifacts"``: ``cka.json`` (teacher x student CKA grid), ``agreement.json`` (summary and
per-class table), ``embedding.npz`` (teacher and student 2-D embeddings, labels, agreement) and
``cka_epochs.json`` (CKA over training). Each present file becomes one figure; none gives [].
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData

CKA_FILE, AGREEMENT_FILE, EMBEDDING_FILE, EPOCHS_FILE = "cka.json", "agreement.json", "embedding.npz", "cka_epochs.json"


def artifacts_dir(folder: str | Path) -> Path:
    return Path(folder) / "artifacts"


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
    path = artifacts_dir(folder) / CKA_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    df = pd.DataFrame(np.array(d["values"], dtype=float), index=d["teacher_layers"], columns=d["student_layers"])
    df.attrs.update({k: v for k, v in d.items() if k not in ("values", "teacher_layers", "student_layers")})
    return df


def load_agreement(folder: str | Path) -> SimpleNamespace | None:
    """The saved agreement (summary fields as attributes, ``per_class`` DataFrame), or None."""
    path = artifacts_dir(folder) / AGREEMENT_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return SimpleNamespace(**d["summary"], per_class=pd.DataFrame(d["per_class"]))


def load_embedding(folder: str | Path) -> dict[str, Any] | None:
    path = artifacts_dir(folder) / EMBEDDING_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_epochs(folder: str | Path) -> pd.DataFrame | None:
    path = artifacts_dir(folder) / EPOCHS_FILE
    if not path.is_file():
        return None
    return pd.DataFrame(json.loads(path.read_text())["rows"])


@register_report_section("representations")
def representations_section(run: RunData) -> list[tuple[str, str, Any]]:
    """CKA heatmap, CKA over epochs, agreement panel and embeddings of ``run``, from its saved artifacts."""
    if run.folder is None:
        return []
    from kdlab.viz.representations import agreement_panel, cka_heatmap, cka_over_epochs, embedding_scatter
    from kdlab.viz.theme import plotly_text

    name = plotly_text(run.name)
    out: list[tuple[str, str, Any]] = []
    cka = load_cka(run.folder)
    if cka is not None:
        pool = cka.attrs.get("pool", "flatten")
        out.append(("cka", "teacher-student CKA", cka_heatmap(
            cka, title=f"{name}: CKA teacher x student ({cka.attrs.get('n_samples', '?')} samples, {pool})")))
    epochs = load_epochs(run.folder)
    if epochs is not None and len(epochs):
        out.append(("cka-epochs", "CKA over training", cka_over_epochs(epochs, title=f"{name}: CKA over training")))
    agree = load_agreement(run.folder)
    if agree is not None:
        out.append(("agreement", "teacher-student agreement", agreement_panel(agree, title=f"{name}: agreement")))
    emb = load_embedding(run.folder)
    if emb is not None:
        method = str(emb["method"])
        out.append(("embeddings", "embeddings", embedding_scatter(
            emb["teacher"], emb["student"], emb["labels"], title=f"{name}: {method.upper()} of "
            f"{plotly_text(emb['teacher_layer'])} / {plotly_text(emb['student_layer'])}", method=method)))
    return out
