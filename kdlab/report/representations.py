"""The report's Representations section: the CKA grid, agreement and embeddings a ``cka`` job saved for the run
(``kdlab.jobs.cka`` owns the files and their reader), and CKA over training (``CKARecorder`` writes it into the
training run's folder). Each present part becomes one figure; none gives [].
"""
from __future__ import annotations

from typing import Any

from kdlab.jobs.cka import CKAJob, load_epochs
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


@register_report_section("representations")
def representations_section(run: RunData) -> list[tuple[str, str, Any]]:
    """CKA heatmap, CKA over epochs, agreement panel and embeddings of ``run``, from its saved artifacts."""
    folder = run.artifact_folder("cka")
    if folder is None:
        return []
    from kdlab.viz.representations import cka_over_epochs
    from kdlab.viz.theme import plotly_text

    saved = CKAJob().read(folder)
    figs = saved.figures(name=run.name) if saved is not None else {}
    titles = {"cka": "teacher-student CKA", "agreement": "teacher-student agreement", "embeddings": "embeddings"}
    out: list[tuple[str, str, Any]] = [(k, titles[k], f) for k, f in figs.items() if k == "cka"]
    epochs = load_epochs(run.folder) if run.folder is not None else None
    if epochs is not None and len(epochs):
        out.append(("cka-epochs", "CKA over training", cka_over_epochs(epochs, title=f"{plotly_text(run.name)}: "
                                                                                       "CKA over training")))
    out += [(k, titles[k], f) for k, f in figs.items() if k != "cka"]
    return out
