"""The report section of condensation runs: final per-class grid, the snapshot scrubber, class means vs
synthetic images, nearest real neighbours (pixel space) and the evaluation accuracy, from ``run.folder``."""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData

MAX_SNAPSHOTS = 12  # frames embedded in a report (evenly spaced, first and last kept)


def _spaced(items: list[int], n: int) -> list[int]:
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1)
    return sorted({items[round(i * step)] for i in range(n)})


def _train_split(spec: dict[str, Any]) -> Any:
    from kdlab.runs.experiment import load_splits
    from kdlab.runs.spec import load_spec

    return load_splits(load_spec(spec)).train


@register_report_section("distilled images")
def condense_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """Figures of a condensation run ([] for any other run)."""
    if run.folder is None:
        return []
    from kdlab.condense import nearest_real, summarize
    from kdlab.jobs.condense import list_snapshots, load_evaluation, load_snapshot, load_synthetic
    from kdlab.viz.condense import accuracy_bars, class_grid, mean_vs_synthetic, neighbours_figure, snapshot_scrubber
    from kdlab.viz.theme import plotly_text

    syn = load_synthetic(run.folder)
    if syn is None:
        return []
    name = plotly_text(run.name)
    fyi = bool(syn.meta.get("config", {}).get("fyi"))
    out = [("condense-grid", "synthetic images", class_grid(syn.x, syn.y, syn.classes, flips=fyi,
                                                            title=f"{name}: synthetic images per class"
                                                                  + (" (with FYI flips)" if fyi else "")))]
    if "expert_path_2d" in syn.extras:  # trajectory matching: expert vs synthetic-trained paths, matching distance
        from kdlab.viz.trajectories import distance_to_expert, matching_distance, trajectory_paths

        out.append(("condense-trajectories", "trajectory matching", trajectory_paths(
            syn.extras["expert_path_2d"], syn.extras["student_path_2d"],
            title=f"{name}: expert vs synthetic-trained trajectory (PCA)")))
        out.append(("condense-expert-distance", "distance to the expert", distance_to_expert(
            syn.extras["distance_to_expert"], title=f"{name}: parameter distance to the expert, per epoch")))
        loss = syn.meta.get("loss") or []
        if loss:
            lr = syn.extras.get("syn_lr_history")
            out.append(("condense-matching", "matching distance", matching_distance(
                list(range(1, len(loss) + 1)), loss, lr if lr is not None and len(lr) == len(loss) else None,
                title=f"{name}: normalised distance to the expert's target")))
    iters = _spaced(list_snapshots(run.folder), MAX_SNAPSHOTS)
    if len(iters) > 1:
        snaps = [(it, s.x, s.y) for it in iters for s in [load_snapshot(run.folder, it)]]
        out.append(("condense-snapshots", "distillation snapshots",
                    snapshot_scrubber(snaps, syn.classes, title=f"{name}: synthetic images during distillation")))
    try:
        train = _train_split(run.spec)
    except Exception:  # the data is not available here (a user dataset on another machine): skip these
        train = None
    if train is not None and train.in_shape == syn.in_shape:
        out.append(("condense-means", "class means vs synthetic",
                    mean_vs_synthetic(train.x, train.y, syn.x, syn.y, syn.classes,
                                      title=f"{name}: class mean of the real images vs synthetic images")))
        first = [int((syn.y == k).nonzero()[0, 0]) for k in range(syn.num_classes) if (syn.y == k).any()]
        idx, dist = nearest_real(syn.x[first], train.x, k=min(5, len(train)))
        out.append(("condense-neighbours", "nearest real neighbours",
                    neighbours_figure(syn.x[first], train.x, idx, dist, rows=[syn.classes[int(syn.y[i])]
                                                                           for i in first],
                                      title=f"{name}: nearest real neighbours (pixel space)")))
    rows = load_evaluation(run.folder)
    if rows is not None and not rows.empty:
        out.append(("condense-accuracy", "evaluation", accuracy_bars(
            summarize(rows), title=f"{name}: test accuracy of networks trained only on the synthetic set")))
    return out
