"""One file per distillation method (spatial.py: the base of AT and NST); importing this registers them all."""
from __future__ import annotations

from kdlab.distill.methods import (  # noqa: F401
    at,
    bdkd,
    born_again,
    dho,
    dist,
    distill_nearest,
    distill_weighted,
    dkd,
    dml,
    fitnets,
    fixmatch,
    kd,
    lskd,
    margin_mse,
    mixup_kd,
    nd,
    nst,
    ofa,
    pkt,
    rkd,
    sinkhorn_kd,
    taid,
    tf_kd,
    vanilla,
)
