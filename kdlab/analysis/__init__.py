"""What got distilled: representation similarity (CKA), agreement and embeddings, frequency analysis.

Science layer: torch/numpy/pandas only; results are tensors, dataclasses or DataFrames. Import the
submodules (``kdlab.analysis.cka``, ``kdlab.analysis.frequency``, ...) directly.
"""
