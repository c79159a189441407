"""Report section "language models": the views of an ``lm_distill`` run.

The job (``kdlab.jobs.lm_distill``) saves per-domain bits per byte, the token-divergence view of one text, DDK's
domain mixture and generations under its run folder's ``artifacts/``; each one present becomes a figure here, with
the run's loss terms and validation bits per byte when its metrics are in the run data (a run of the store). A run
without them adds nothing. Every string from the run (domains, tokens, generations) is escaped by the builders.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from kdlab.jobs.lm_distill import EVAL_FILE, load_lm_artifacts
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


def lm_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """``(kind, title, figure)`` for each language-model view in ``run.folder``."""
    from kdlab.viz.text import bpb_bars, gap_closed, lm_curves, mixture_area, samples_table, token_view

    folder = run.folder
    if folder is None or not (folder / "artifacts" / EVAL_FILE).is_file():
        return []
    art = load_lm_artifacts(folder)
    out: list[tuple[str, str, go.Figure]] = []
    closed = gap_closed(art.eval).get("all", float("nan"))
    note = f" (KD closed {closed:.0%} of the no-KD student's gap to the teacher)" if closed == closed else ""
    out.append(("lm-bpb", "Bits per byte per domain: teacher, KD student, no-KD student",
                bpb_bars(art.eval, title="Bits per byte on held-out text, per domain" + note)))
    h = run.history
    if isinstance(h, pd.DataFrame) and {"key", "value", "step"} <= set(h.columns) and \
            h["key"].astype(str).str.startswith("loss/").any():
        out.append(("lm-curves", "Loss terms and validation bits per byte", lm_curves(h)))
    if art.mixture is not None and len(art.mixture):
        out.append(("lm-mixture", "DDK domain mixture over training", mixture_area(art.mixture)))
    if art.tokens is not None and len(art.tokens):
        out.append(("lm-tokens", "Token view: KL(teacher || student) per token", token_view(art.tokens)))
    if art.samples:
        out.append(("lm-samples", "Generations", samples_table(art.samples)))
    return out


register_report_section("language models", lm_section)
