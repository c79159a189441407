"""Independent reference computations of the transferability metrics (imported by name by the metric tests)."""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize


def direct_logme(f: np.ndarray, y: np.ndarray) -> float:
    """Mean over classes of max_{alpha, beta} log N(t_c; 0, I/beta + F F^T/alpha) / N (You et al., 2021, eq. 2),
    maximised numerically without any eigen-decomposition."""
    n = len(f)
    gram = f @ f.T

    def minus_evidence(log_alpha_beta: np.ndarray, t: np.ndarray) -> float:
        alpha, beta = np.exp(log_alpha_beta)
        cov = np.eye(n) / beta + gram / alpha
        return 0.5 * (n * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + t @ np.linalg.solve(cov, t))

    best = []
    for k in np.unique(y):
        t = (y == k).astype(float)
        start = minimize(minus_evidence, np.zeros(2), args=(t,), method="Nelder-Mead",
                         options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000}).x
        best.append(minimize(minus_evidence, start, args=(t,), method="Nelder-Mead",
                             options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 4000}).fun)
    return -float(np.mean(best)) / n
