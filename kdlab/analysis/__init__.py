"""What got distilled: representation similarity (CKA), agreement and embeddings, frequency analysis.

Science layer: torch/numpy/pandas only; results are tensors, dataclasses or DataFrames. Import the
submodules (``kdlab.analysis.cka``, ``kdlab.analysis.frequency``, ...) directly.

- ``cka``: linear / RBF / debiased / minibatch CKA, ``cka_matrix`` over feature taps in one streaming pass;
- ``cka_callback``: ``CKARecorder``, teacher-student CKA recorded by the trainer over epochs;
- ``agreement``: top-1 agreement, KL fidelity, per-class gap, ECE; ``embeddings``: PCA / UMAP, cached;
- ``student_choice``: training-free ranking of candidate students (DisWOT idea).
"""
