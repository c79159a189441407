"""One layer's share of a CKA batch: its centred features and the strict upper triangle of their Gram matrix.

The Gram product (N^2 D per layer per batch) is the work CKA adds to the forward passes. On one CPU thread it comes
from BLAS's symmetric rank-k update (syrk: half the multiply-adds of a matrix product; torch has none, so it is
scipy's BLAS through ctypes); with several threads, or off the CPU, from torch's matrix product. ``LayerBatch.of``
runs inside a forward hook, while the layer's output is still in cache, so only the N x N result is kept.
"""
from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch


@cache
def _routine(dtype: torch.dtype) -> Callable[..., None] | None:
    """scipy.linalg.cython_blas's ssyrk / dsyrk as a ctypes function (Fortran signature, 32-bit ints)."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return None
    capsule = cython_blas.__pyx_capi__.get("ssyrk" if dtype == torch.float32 else "dsyrk")
    if capsule is None:  # pragma: no cover
        return None
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype, api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    pointer = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 10)(pointer)


_local = threading.local()


def _scratch(n: int, dtype: np.dtype) -> np.ndarray:
    """This thread's N x N output buffer: zeroed once, as syrk only ever writes its upper triangle (a fresh buffer
    per call costs page faults)."""
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (n, np.dtype(dtype).str)
    if key not in buffers:
        buffers[key] = np.zeros((n, n), dtype)
    return buffers[key]


def _syrk(f: torch.Tensor) -> torch.Tensor:
    """The upper triangle (row-major, diagonal included; the rest zero) of F F^T, in this thread's buffer."""
    n, d = f.shape
    out = _scratch(n, np.float32 if f.dtype == torch.float32 else np.float64)
    scalar = ctypes.c_float if f.dtype == torch.float32 else ctypes.c_double
    one, zero = scalar(1.0), scalar(0.0)
    ints = [ctypes.c_int(v) for v in (n, d, d, n)]
    # F (row-major N x D) is the column-major D x N matrix A; C = A^T A is column-major, so its lower triangle
    # ("L") is the row-major upper one
    _routine(f.dtype)(ctypes.c_char_p(b"L"), ctypes.c_char_p(b"T"), ctypes.byref(ints[0]), ctypes.byref(ints[1]),
                      ctypes.byref(one), ctypes.c_void_p(f.data_ptr()), ctypes.byref(ints[2]), ctypes.byref(zero),
                      ctypes.c_void_p(out.ctypes.data), ctypes.byref(ints[3]))
    return torch.from_numpy(out)


def gram_upper(f: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of F F^T (diagonal and lower triangle zero) as a new N x N matrix of F's dtype:
    BLAS syrk on one CPU thread (call it under ``threadpool_limits(1, "blas")``), a matrix product otherwise."""
    f = f.contiguous()
    syrk = (f.device.type == "cpu" and f.dtype in (torch.float32, torch.float64) and torch.get_num_threads() == 1
            and _routine(f.dtype) is not None)
    upper = _syrk(f).clone() if syrk else (f @ f.T).triu_(1)
    upper.diagonal().zero_()
    return upper


def centred(feats: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One batch's features as a new (N, D) tensor of ``dtype`` with the batch mean removed: HSIC_1 does not
    change, float32 products then stay close to float64, and later in-place ops cannot alter it."""
    f = feats.reshape(feats.shape[0], -1)
    if f.dtype != dtype:
        f = f.to(dtype)
    return f - f.mean(0)


@dataclass
class LayerBatch:
    """One layer on one batch of N samples: its D centred features (kept only when D < N), and, when D >= N, the
    strict upper triangle of its Gram (N x N, the features' dtype) with the row sums of the zero-diagonal Gram
    (float64)."""

    n: int
    d: int
    feats: torch.Tensor | None = None
    upper: torch.Tensor | None = None
    sums: torch.Tensor | None = None

    @classmethod
    def of(cls, output: torch.Tensor, dtype: torch.dtype = torch.float32) -> LayerBatch:
        """From a layer's (N, ...) output: centred in ``dtype``; the Gram formed now when D >= N."""
        f = centred(output, dtype)
        n, d = f.shape
        return cls(n, d, feats=f) if d < n else cls(n, d).with_gram(f)

    def with_gram(self, f: torch.Tensor | None = None) -> LayerBatch:
        """Itself with its Gram triangle and row sums (formed from ``f`` or its kept features if missing)."""
        if self.upper is None:
            self.upper = gram_upper(self.feats if f is None else f)
            self.sums = self.upper.sum(0, dtype=torch.float64) + self.upper.sum(1, dtype=torch.float64)
        return self
