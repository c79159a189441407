"""Gram matrices F F^T at half the multiply-adds of a matrix product: BLAS's symmetric rank-k update (syrk) from
the BLAS scipy ships, called through ctypes so that the GIL is released and several layers' Grams form at once
(one BLAS thread each). Torch has no syrk; off the CPU (or without scipy's BLAS) a matrix product is used."""
from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from functools import cache

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


def gram_upper(f: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of F F^T for F (N, D): diagonal and lower triangle zero, F's dtype."""
    syrk = _routine(f.dtype) if f.device.type == "cpu" and f.dtype in (torch.float32, torch.float64) else None
    if syrk is None:
        return (f @ f.T).triu_(1)
    f = f.contiguous()
    n, d = f.shape
    out = torch.zeros(n, n, dtype=f.dtype)
    scalar = ctypes.c_float if f.dtype == torch.float32 else ctypes.c_double
    one, zero = scalar(1.0), scalar(0.0)
    ints = [ctypes.c_int(v) for v in (n, d, d, n)]
    # F (row-major N x D) is the column-major D x N matrix A; C = A^T A is column-major, so its lower triangle
    # ("L") is the row-major upper one
    syrk(ctypes.c_char_p(b"L"), ctypes.c_char_p(b"T"), ctypes.byref(ints[0]), ctypes.byref(ints[1]),
         ctypes.byref(one), ctypes.c_void_p(f.data_ptr()), ctypes.byref(ints[2]), ctypes.byref(zero),
         ctypes.c_void_p(out.data_ptr()), ctypes.byref(ints[3]))
    out.diagonal().zero_()
    return out


def grams_upper(feats: Sequence[torch.Tensor], workers: Callable = map) -> list[torch.Tensor]:
    """``gram_upper`` of each tensor; ``workers`` is a ``map`` (e.g. a thread pool's, to form them at once)."""
    return list(workers(gram_upper, feats))
