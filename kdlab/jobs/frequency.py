"""The ``frequency`` job: which frequencies of the teacher's knowledge a run's student took (images).

Band accuracy curves (low/high-pass), Fourier heat maps (Yin et al. 2019) and feature-map spectra of the run's
teacher and student (plus the students of ``compare`` runs). Its files, under the job's run folder
``artifacts/``: ``frequency_bands.csv``, ``fourier_heatmaps.npz`` and ``frequency_spectra.csv`` (the ``graph_kd``
job adds ``graph_energy.csv``); ``save``/``load`` are their one writer and reader, as ``FrequencyArtifacts``. The
job is resumable: each part is saved as soon as it is done, and a resumed run computes only what is missing.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdlab.analysis.fourier_heatmap import FourierHeatmap, fourier_heatmap
from kdlab.analysis.frequency import FrequencyArtifacts, band_curves, feature_spectra
from kdlab.jobs.source import RUN_PARAM, check_source_run, source_models
from kdlab.registry import Param
from kdlab.runs.experiment import load_models
from kdlab.runs.job import Job, JobContext, register_job

SPLITS = ("test", "val")
BAND_FILE, SPECTRA_FILE, GRAPH_FILE = "frequency_bands.csv", "frequency_spectra.csv", "graph_energy.csv"
HEATMAP_FILE = "fourier_heatmaps.npz"


def save(art: FrequencyArtifacts, folder: str | Path) -> list[Path]:
    """Write the parts of ``art`` that are present into ``<folder>/artifacts`` (each atomically); returns them."""
    folder = Path(folder) / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for df, name in ((art.bands, BAND_FILE), (art.spectra, SPECTRA_FILE), (art.graph, GRAPH_FILE)):
        if df is not None:
            tmp = folder / (name + ".tmp")
            df.to_csv(tmp, index=False)
            tmp.replace(folder / name)  # a reader never sees half a file
            written.append(folder / name)
    if art.heatmaps:
        arrays, meta = {}, {}
        for name, hm in art.heatmaps.items():
            arrays[f"{len(meta)}_error"], arrays[f"{len(meta)}_change"] = hm.error, hm.change
            meta[str(len(meta))] = {"name": name, "eps": hm.eps, "n_images": hm.n_images,
                                    "clean_error": hm.clean_error}
        tmp = folder / (HEATMAP_FILE + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(folder / HEATMAP_FILE)
        written.append(folder / HEATMAP_FILE)
    return written


def load(folder: str | Path) -> FrequencyArtifacts:
    """What ``<folder>/artifacts`` holds (missing parts stay None/empty)."""
    folder = Path(folder) / "artifacts"
    out = FrequencyArtifacts()
    if (folder / BAND_FILE).is_file():
        out.bands = pd.read_csv(folder / BAND_FILE)
    if (folder / SPECTRA_FILE).is_file():
        out.spectra = pd.read_csv(folder / SPECTRA_FILE)
    if (folder / GRAPH_FILE).is_file():
        out.graph = pd.read_csv(folder / GRAPH_FILE)
    if (folder / HEATMAP_FILE).is_file():
        with np.load(folder / HEATMAP_FILE) as z:
            for k, m in json.loads(str(z["meta"])).items():
                out.heatmaps[m["name"]] = FourierHeatmap(z[f"{k}_error"], z[f"{k}_change"], float(m["eps"]),
                                                         int(m["n_images"]), float(m["clean_error"]))
    return out
CUTOFFS = tuple(float(c) for c in np.round(np.linspace(0.1, 1.0, 10), 2))


def figures(art: FrequencyArtifacts) -> dict[str, Any]:
    """The figures of what ``art`` holds: bands, agreement, heatmaps, spectra, graph (absent parts skipped)."""
    from kdlab.viz.frequency import band_accuracy_curves, feature_spectra, fourier_heatmaps, graph_energy_bars

    out: dict[str, Any] = {}
    if art.bands is not None and len(art.bands):
        out["bands"] = band_accuracy_curves(art.bands)
        if art.bands["agreement"].notna().any() and art.bands["model"].nunique() > 1:
            out["agreement"] = band_accuracy_curves(art.bands, metric="agreement")
    if art.heatmaps:
        out["heatmaps"] = fourier_heatmaps(art.heatmaps)
    if art.spectra is not None and len(art.spectra):
        out["spectra"] = feature_spectra(art.spectra)
    if art.graph is not None and len(art.graph):
        out["graph"] = graph_energy_bars(art.graph)
    return out


@register_job("frequency")
class FrequencyJob(Job):
    """Band accuracy curves, Fourier heat maps and feature spectra of a run's teacher and student."""

    resumable = True
    params = {
        "run": RUN_PARAM,
        "compare": Param([], "ids of other finished runs whose students are added (e.g. a vanilla student)", list),
        "split": Param("test", "which split's images to use", str, choices=SPLITS),
        "n_images": Param(500, "images for the band curves", int, 10, 10_000),
        "heatmap_images": Param(100, "images for the Fourier heat maps (0: none)", int, 0, 2000),
        "eps": Param(10.0, "L2 norm of the Fourier perturbation (MNIST: about 10)", float, 0.01, 100.0),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        others = [check_source_run(store, r, need_teacher=False, where=f"params.compare[{i}]")
                  for i, r in enumerate(params["compare"])]
        return {**params, "run": check_source_run(store, params["run"], need_teacher=True), "compare": others}

    def title(self, params: Mapping[str, Any]) -> str:
        return f"frequency-{params.get('run') or ''}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        src = source_models(ctx)
        models = {"teacher": src.teacher, "student": src.student}
        for other in p["compare"]:
            name = ctx.store.get_run(other).name
            models[name if name not in models else f"{name} ({other})"] = load_models(ctx.store.run_dir(other)).student
        models = {k: m.to(ctx.device) for k, m in models.items()}  # the analyses run where the models are
        data = getattr(src.splits, p["split"])
        n = min(int(p["n_images"]), len(data))
        x, y = data.x[:n], data.y[:n]
        n_maps = min(int(p["heatmap_images"]), n)
        if not ctx.resume:
            shutil.rmtree(ctx.run_dir / "artifacts", ignore_errors=True)
        art = load(ctx.run_dir)
        total = 2 + (len(models) if n_maps else 0)
        done = 0
        if art.bands is None:
            ctx.progress(done, total, "band accuracy")
            art.bands = band_curves(models, x, y, CUTOFFS, reference="teacher")
            save(FrequencyArtifacts(bands=art.bands), ctx.run_dir)  # each part is written once, when done
        done += 1
        for name, model in models.items() if n_maps else ():
            if name not in art.heatmaps:
                ctx.progress(done, total, f"Fourier heat map: {name}")
                art.heatmaps[name] = fourier_heatmap(model, x[:n_maps], y[:n_maps], eps=float(p["eps"]))
                save(FrequencyArtifacts(heatmaps=art.heatmaps), ctx.run_dir)
            done += 1
        if art.spectra is None:
            ctx.progress(done, total, "feature spectra")
            art.spectra = feature_spectra(models, x[: min(n, 256)])
            save(FrequencyArtifacts(spectra=art.spectra), ctx.run_dir)
        ctx.progress(total, total, "done")
        low = art.bands[(art.bands["filter"] == "low")]
        out = {f"low_pass_acc/{m}": float(g.sort_values("cutoff")["acc"].iloc[len(g) // 2])
               for m, g in low.groupby("model")}
        return {**out, "n_images": float(n)}

    def read(self, run_dir: str | Path) -> FrequencyArtifacts | None:
        art = load(run_dir)
        return None if art.empty else art
