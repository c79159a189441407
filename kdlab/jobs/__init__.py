"""The built-in job kinds (``kdlab.runs.job``): one module per kind, each declaring its parameters, running as
``run(ctx)`` in a worker and owning one artifact format with one reader.

- ``train``: an experiment spec (teacher, student, method) trained; resumable from its last checkpoint.
- ``condense``: dataset distillation (``task: condense`` specs); ``neighbours``: nearest real images of its set.
- ``cka``: teacher x student CKA grid, agreement and embeddings of a finished run.
- ``frequency``: band curves, Fourier heat maps and feature spectra of a run (resumable by part).
- ``graph_condense``: Mirage graph distillation (frequent computation-tree sets) of a graph-classification set;
  GCN/GIN trained on full vs distilled data.
- ``graph_kd``: the GNN-to-MLP study (GCN teacher, MLP / KD-MLP / FF-G2M-MLP students) on CSBM graphs.
- ``transfer_rank``: the source zoo ranked for a target task with a label budget, and its weights.
- ``lm_distill``: a causal LM distilled on a text corpus (``kdlab.text``), per-domain bits per byte.
- ``diffusion``: a diffusion teacher distilled into a few-step student (``kdlab.diffusion``), quality per step.
- ``shift``: studies of distillation under distribution shift (``kdlab.shift``): the 8-target benchmark,
  Meta-DMoE, pair gains of complementary transfer, source-free adaptation, KD3, HARD.
- ``sweep``: configurations of an experiment spec searched with Optuna or Ray Tune, trials as training runs,
  bad ones pruned early (``kdlab.sweeps``).
- ``student_choice``: candidate students ranked for a run's teacher without training (DisWOT).

``kdlab.submit(kind, **params)`` (or ``kdlab.launch({"kind": ..., "params": {...}})``) runs one in the background.
"""
from __future__ import annotations

from kdlab.jobs import (  # noqa: F401  (importing a module registers its kind)
    cka,
    condense,
    diffusion,
    frequency,
    graph_condense,
    graph_kd,
    lm_distill,
    neighbours,
    shift,
    student_choice,
    sweep,
    train,
    transfer_rank,
)
