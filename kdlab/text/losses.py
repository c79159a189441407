"""Token-level divergences between teacher and student next-token distributions, and the LM_METHODS registry.

Every divergence takes student logits ``s`` of shape ``[..., V]`` (normally ``[N, V]``: N tokens, already masked
and flattened by the caller) and a teacher given either as dense logits of the same shape or as a sparse
``TopK`` (the teacher's log-probs at its k most likely tokens, e.g. from a cache). Each returns the MEAN over
the tokens (a scalar), computed with ``log_softmax`` in float32 (float64 inputs stay float64), so logits of
magnitude 1e4 and ``-inf`` entries (tokens masked out of both distributions) give no NaN.

Temperature: both logits are divided by ``temperature`` before the softmax and, following the LM KD convention
(TRL's GKDTrainer, DistiLLM), the result is NOT multiplied by ``temperature**2`` (unlike Hinton et al.'s KD).

Sparse teacher (``TopK``): both distributions are coarsened to k + 1 buckets, the teacher's k tokens and "the
rest": the teacher's rest mass is ``1 - sum(exp(values))`` (exact, its log-probs are cached at T = 1), the
student's is its mass outside those k tokens (from its full-vocabulary ``log_softmax``; never a dense [N, V]
teacher). Every divergence is then the same formula on the k + 1 buckets: a lower bound of the full divergence
(data processing), equal to it for k = V, and unbiased in the student's total mass on the teacher's top-k (the
student is not pushed to put all its mass there, as renormalising the teacher over k would). A temperature acts
on the bucket distributions of both models (exact at T = 1). Rest buckets are floored at ``1e-8`` (after the
temperature) so reverse divergences stay finite when the teacher's top-k holds all its mass. TAID needs the
full teacher logits and refuses a ``TopK``.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.distill.methods.taid import taid_next_t
from kdlab.errors import ConfigError, ShapeError
from kdlab.registry import Param, Registry


class TopK(NamedTuple):
    """A sparse teacher: ``values [N, k]`` = its log-probs (T = 1) at its top-k tokens ``indices [N, k]`` (long)."""

    values: Tensor
    indices: Tensor


Teacher = Tensor | TopK


# ------------------------------------------------------------------------------------------------ helpers
def _float(x: Tensor) -> Tensor:
    """``x`` in float32 at least (half and bfloat16 are promoted; float64 stays float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError.at("temperature", f"must be > 0, got {temperature!r}")


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """``log_softmax(logits / temperature)`` over the last dim, in float32, flattened to ``[N, V]``."""
    _check_temperature(temperature)
    x = _float(logits)
    return F.log_softmax(x.reshape(-1, x.shape[-1]) / temperature, dim=-1)


_STUDENT_LOG_PROBS: ContextVar[bool] = ContextVar("kdlab_student_log_probs", default=False)


@contextlib.contextmanager
def student_log_probs() -> Iterator[None]:
    """Within the block, divergences take the student's log-probs (``log_softmax`` of its logits, computed once by
    the caller and shared with its cross-entropy) instead of its logits: at temperature 1 they are used as they
    are, saving a second softmax over the vocabulary; at any temperature the result equals that of the logits
    (``log_softmax`` is shift-invariant per row)."""
    token = _STUDENT_LOG_PROBS.set(True)
    try:
        yield
    finally:
        _STUDENT_LOG_PROBS.reset(token)


def _student(s: Tensor, temperature: float) -> Tensor:
    """The student's log-probs ``[N, V]`` at ``temperature`` (see ``student_log_probs``)."""
    if temperature == 1.0 and _STUDENT_LOG_PROBS.get():
        x = _float(s)
        return x.reshape(-1, x.shape[-1])
    return _log_probs(s, temperature)


def _kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise ``p * (log p - log q)`` with ``0 log 0 = 0`` (no NaN, forward or backward, where p = 0)."""
    keep = log_p > float("-inf")
    diff = torch.where(keep, log_p - log_q, torch.zeros((), dtype=log_p.dtype, device=log_p.device))
    return log_p.exp() * diff


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-row ``KL(p || q)`` over the last dim."""
    return _kl_terms(log_p, log_q).sum(-1)


def _log_mix(log_a: Tensor, log_b: Tensor, w: float) -> Tensor:
    """``log(w * a + (1 - w) * b)`` from log-probs, stable (logsumexp); exact at w = 0 and w = 1."""
    if w == 0:
        return log_b
    if w == 1:
        return log_a
    w_t = torch.tensor(w, dtype=log_a.dtype, device=log_a.device)
    both_zero = (log_a == float("-inf")) & (log_b == float("-inf"))  # masked tokens: keep the gradient NaN-free
    zero = torch.zeros((), dtype=log_a.dtype, device=log_a.device)
    log_a, log_b = torch.where(both_zero, zero, log_a), torch.where(both_zero, zero, log_b)
    mix = torch.logsumexp(torch.stack([log_a + torch.log(w_t), log_b + torch.log1p(-w_t)]), dim=0)
    return torch.where(both_zero, torch.full((), float("-inf"), dtype=mix.dtype, device=mix.device), mix)


def _check_pair(s: Tensor, t: Tensor) -> None:
    if s.shape != t.shape:
        raise ShapeError(f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape")


def _coarse(s: Tensor, topk: TopK, temperature: float) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probs over the k + 1 buckets (the teacher's top-k tokens, then the rest), both
    ``[N, k + 1]``, at ``temperature`` (see the module docstring)."""
    values, indices = topk
    if values.shape != indices.shape or values.shape[:-1] != s.shape[:-1]:
        raise ShapeError(f"TopK values {tuple(values.shape)} / indices {tuple(indices.shape)} do not fit student "
                         f"logits {tuple(s.shape)} (expected [..., k] with the student's leading shape)")
    _check_temperature(temperature)
    k = values.shape[-1]
    log_ps_k = _student(s, 1.0).gather(-1, indices.reshape(-1, k).long())
    log_pt_k = _float(values).reshape(-1, k).to(log_ps_k.dtype)
    buckets = []
    for log_k in (log_ps_k, log_pt_k):
        covered = torch.logsumexp(log_k, dim=-1, keepdim=True).clamp_max(0.0)
        rest = torch.log((-torch.expm1(covered)).clamp_min(0.0))  # log(1 - mass of the k tokens); -inf at k = V
        logp = F.log_softmax(torch.cat([log_k, rest], dim=-1) / temperature, dim=-1)
        floored = torch.cat([logp[:, :k], logp[:, k:].clamp_min(math.log(_REST_FLOOR))], dim=-1)
        buckets.append(F.log_softmax(floored, dim=-1))
    return buckets[0], buckets[1]


def _dense(s: Tensor, t: Teacher, temperature: float) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probs ``[N, V]`` (or ``[N, k + 1]`` buckets for a ``TopK`` teacher)."""
    if isinstance(t, TopK):
        return _coarse(s, t, temperature)
    _check_pair(s, t)
    return _student(s, temperature), _log_probs(t, temperature)


_REST_FLOOR = 1e-8


def _no_topk(what: str) -> ConfigError:
    return ConfigError(f"{what} cannot use a cached top-k teacher (it is infinite or undefined without the full "
                       f"teacher distribution); methods that can: {', '.join(topk_methods())}")


# ---------------------------------------------------------------------------------------------- divergences
def forward_kl(s: Tensor, t: Teacher, temperature: float = 1.0) -> Tensor:
    """``KL(p_T || p_S)`` per token, averaged (Hinton-style distillation without the T^2 factor)."""
    log_ps, log_pt = _dense(s, t, temperature)
    return _kl(log_pt, log_ps).mean()


def topk_forward_kl(s: Tensor, topk: TopK, temperature: float = 1.0) -> Tensor:
    """``KL(q || p_S)`` with ``q`` the teacher renormalised over its top-k tokens (see the module docstring)."""
    if not isinstance(topk, TopK):
        raise ConfigError(f"topk_forward_kl needs a TopK teacher, got {type(topk).__name__}")
    return forward_kl(s, topk, temperature)


def reverse_kl(s: Tensor, t: Teacher, temperature: float = 1.0) -> Tensor:
    """``KL(p_S || p_T)`` per token, averaged (mode-seeking; MiniLLM, Gu et al. 2024)."""
    log_ps, log_pt = _dense(s, t, temperature)
    return _kl(log_ps, log_pt).mean()


def generalized_jsd(s: Tensor, t: Teacher, beta: float = 0.5, temperature: float = 1.0) -> Tensor:
    """Generalised JSD of GKD (Agarwal et al. 2024), as TRL's ``GKDTrainer.generalized_jsd_loss``:
    ``beta * KL(p_T || m) + (1 - beta) * KL(p_S || m)`` with ``m = beta p_T + (1 - beta) p_S``; beta = 0 is
    ``KL(p_T || p_S)``, beta = 1 is ``KL(p_S || p_T)``. Per-token mean (TRL's "batchmean" with labels)."""
    if not 0.0 <= beta <= 1.0:
        raise ConfigError.at("beta", f"must be in [0, 1], got {beta!r}")
    log_ps, log_pt = _dense(s, t, temperature)
    if beta == 0:
        return _kl(log_pt, log_ps).mean()
    if beta == 1:
        return _kl(log_ps, log_pt).mean()
    log_m = _log_mix(log_pt, log_ps, beta)
    return (beta * _kl(log_pt, log_m) + (1 - beta) * _kl(log_ps, log_m)).mean()


def skew_kl(s: Tensor, t: Teacher, alpha: float = 0.1, temperature: float = 1.0) -> Tensor:
    """Skew KL of DistiLLM (Ko et al. 2024): ``KL(p_T || alpha p_T + (1 - alpha) p_S)``; alpha = 0 is forward KL."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError.at("alpha", f"must be in [0, 1], got {alpha!r}")
    log_ps, log_pt = _dense(s, t, temperature)
    return _kl(log_pt, _log_mix(log_pt, log_ps, alpha)).mean()


def skew_reverse_kl(s: Tensor, t: Teacher, alpha: float = 0.1, temperature: float = 1.0) -> Tensor:
    """Skew reverse KL of DistiLLM (Ko et al. 2024): ``KL(p_S || alpha p_S + (1 - alpha) p_T)``; alpha = 0 is
    reverse KL."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError.at("alpha", f"must be in [0, 1], got {alpha!r}")
    log_ps, log_pt = _dense(s, t, temperature)
    return _kl(log_ps, _log_mix(log_ps, log_pt, alpha)).mean()


def total_variation(s: Tensor, t: Teacher, temperature: float = 1.0) -> Tensor:
    """Total variation distance ``0.5 * sum |p_T - p_S|`` per token, averaged (in [0, 1])."""
    log_ps, log_pt = _dense(s, t, temperature)
    return (0.5 * (log_pt.exp() - log_ps.exp()).abs().sum(-1)).mean()


# ---------------------------------------------------------------------------------------------------- TAID
def taid_token_loss(s: Tensor, t: Tensor, interp: float, temperature: float = 1.0) -> Tensor:
    """TAID loss ``KL(p_t || p_S)`` with ``p_t = softmax((1 - interp) z_S.detach() + interp z_T)`` (logits divided
    by ``temperature`` first), per-token mean."""
    log_ps, log_pt = _dense(s, t, temperature)
    # log_softmax is shift-invariant per row, so interpolating log-probs equals interpolating the logits
    log_target = F.log_softmax((1.0 - interp) * log_ps.detach() + interp * log_pt, dim=-1)
    return _kl(log_target, log_ps).mean()


class TAID:
    """TAID's interpolated target and adaptive schedule for tokens (Shing, Misaki, Bao, Yokoi & Akiba, "TAID:
    Temporally Adaptive Interpolated Distillation", ICLR 2025); the schedule is kdlab.distill's ``taid_next_t``."""

    def __init__(self, t_start: float = 0.4, t_end: float = 1.0, alpha: float = 5e-4, beta: float = 0.99,
                 disable_adaptive: bool = False):
        if not 0.0 <= t_start <= t_end <= 1.0:
            raise ConfigError.at("t_end", f"need 0 <= t_start ({t_start}) <= t_end ({t_end}) <= 1")
        self.t_start, self.t_end, self.alpha, self.beta = float(t_start), float(t_end), float(alpha), float(beta)
        self.disable_adaptive = bool(disable_adaptive)
        self.t = self.t_start
        self.momentum = 0.0
        self.prev_loss = math.inf

    def loss(self, s: Tensor, t: Tensor, temperature: float = 1.0) -> Tensor:
        """``KL(p_t || p_S)`` at the current interpolation ``self.t``."""
        if isinstance(t, TopK):
            raise _no_topk("taid")
        return taid_token_loss(s, t, self.t, temperature)

    def update(self, progress: float, loss_value: float) -> None:
        """Advance ``t`` once per optimiser step from the training progress in [0, 1] and this step's TAID loss
        (``disable_adaptive``: the linear schedule from t_start to t_end only)."""
        step = 0.0 if self.disable_adaptive else self.alpha
        self.t, self.momentum = taid_next_t(self.t, self.momentum, float(loss_value), self.prev_loss,
                                            float(progress), self.t_start, self.t_end, step, self.beta)
        if self.disable_adaptive and math.isinf(self.prev_loss):  # linear schedule from the first step
            self.t = min(self.t_end, self.t_start + (self.t_end - self.t_start) * min(max(progress, 0.0), 1.0))
        self.prev_loss = float(loss_value)

    def state_dict(self) -> dict[str, float]:
        return {"t": self.t, "momentum": self.momentum, "prev_loss": self.prev_loss}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.t, self.momentum, self.prev_loss = float(d["t"]), float(d["momentum"]), float(d["prev_loss"])


# ------------------------------------------------------------------------------------------------- registry
LM_METHODS = Registry("LM distillation method")

TEMPERATURE = Param(1.0, "softmax temperature of both distributions (no T^2 factor)", float, 0.0, 10.0,
                    low_open=True)
KD_WEIGHT = Param(1.0, "weight of the distillation term (the trainer adds ce_weight * cross-entropy)", float,
                  0.0, 100.0)
COMMON = {"temperature": TEMPERATURE, "kd_weight": KD_WEIGHT}


def register_lm_method(name: str, **tags: Any):
    """Decorator registering an ``LMMethod`` subclass under ``name`` (its ``params`` are the declared ones)."""

    def wrap(cls: type[LMMethod]) -> type[LMMethod]:
        cls.name = name
        LM_METHODS.register(name, accepts_topk=cls.accepts_topk, uses_teacher_logits=cls.uses_teacher_logits,
                            same_vocab=cls.same_vocab, **tags)(cls)
        return cls

    return wrap


def topk_methods() -> list[str]:
    """Names of the registered methods that can train from a cached top-k teacher."""
    return [n for n in LM_METHODS.names() if LM_METHODS.get(n).accepts_topk]


class LMMethod:
    """Base of LM distillation methods: declared ``params``, named loss terms, optional schedule state."""

    name: str = ""
    params: dict[str, Param] = {}
    uses_teacher_logits = True
    same_vocab = True
    accepts_topk = False

    def __init__(self, **params: Any):
        self.hp = LM_METHODS.validate(self.name, params, "params") if self.name in LM_METHODS else dict(params)

    def terms(self, s_logits: Tensor, t_logits: Teacher) -> dict[str, Tensor]:
        """Named, weighted loss terms (the student's own cross-entropy is added by the trainer)."""
        if isinstance(t_logits, TopK) and not self.accepts_topk:
            raise _no_topk(self.name or type(self).__name__)
        return {"kd": self.hp["kd_weight"] * self.divergence(s_logits, t_logits)}

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        raise NotImplementedError

    def on_step(self, progress: float, terms: dict[str, float]) -> None:
        """Called once per optimiser step with progress in [0, 1] and the step's terms (schedules; default none)."""

    def state(self) -> dict:
        return {}

    def load_state(self, d: dict) -> None:
        pass

    def info(self) -> dict[str, float]:
        return {}


def create_lm_method(name: str, params: dict | None = None, where: str = "method") -> LMMethod:
    """Build registered method ``name`` with validated ``params`` (errors name ``<where>.params.<field>``)."""
    cls = LM_METHODS.get(name, where)
    values = LM_METHODS.validate(name, params, f"{where}.params")
    return cls(**values)


@register_lm_method("none")
class NoKD(LMMethod):
    """No distillation: the student trains on cross-entropy alone (the baseline)."""

    params: dict[str, Param] = {}
    uses_teacher_logits = False

    def terms(self, s_logits: Tensor, t_logits: Teacher | None = None) -> dict[str, Tensor]:
        return {}


@register_lm_method("forward_kl")
class ForwardKL(LMMethod):
    """Forward KL(p_T || p_S) per token (word-level KD).

    Hinton, Vinyals & Dean 2015 (NeurIPS workshop); word-level KD of Kim & Rush 2016 (EMNLP)."""

    params = dict(COMMON)
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return forward_kl(s_logits, t_logits, self.hp["temperature"])


@register_lm_method("reverse_kl")
class ReverseKL(LMMethod):
    """Reverse KL(p_S || p_T) per token (MiniLLM: Gu, Dong, Wei & Huang 2024, ICLR)."""

    params = dict(COMMON)
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return reverse_kl(s_logits, t_logits, self.hp["temperature"])


@register_lm_method("gjsd")
class GeneralizedJSD(LMMethod):
    """Generalised JSD with beta (GKD), as TRL's GKDTrainer.

    Agarwal, Vieillard, Zhou, Stanczyk, Ramos, Geist & Bachem 2024 (ICLR)."""

    params = {**COMMON, "beta": Param(0.5, "JSD interpolation: 0 = forward KL, 1 = reverse KL", float, 0.0, 1.0)}
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return generalized_jsd(s_logits, t_logits, self.hp["beta"], self.hp["temperature"])


@register_lm_method("skew_kl")
class SkewKL(LMMethod):
    """Skew KL(p_T || a p_T + (1 - a) p_S) (DistiLLM: Ko, Kim, Chen & Yun 2024, ICML)."""

    params = {**COMMON, "alpha": Param(0.1, "skew: teacher weight in the mixture (0 = forward KL)", float, 0.0, 1.0)}
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return skew_kl(s_logits, t_logits, self.hp["alpha"], self.hp["temperature"])


@register_lm_method("skew_reverse_kl")
class SkewReverseKL(LMMethod):
    """Skew reverse KL(p_S || a p_S + (1 - a) p_T) (DistiLLM: Ko, Kim, Chen & Yun 2024, ICML)."""

    params = {**COMMON,
              "alpha": Param(0.1, "skew: student weight in the mixture (0 = reverse KL)", float, 0.0, 1.0)}
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return skew_reverse_kl(s_logits, t_logits, self.hp["alpha"], self.hp["temperature"])


@register_lm_method("tv")
class TotalVariation(LMMethod):
    """Total variation distance per token (f-DISTILL: Wen, Li, Du & Mou 2023, ACL)."""

    params = dict(COMMON)
    accepts_topk = True

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        return total_variation(s_logits, t_logits, self.hp["temperature"])


@register_lm_method("taid")
class TAIDMethod(LMMethod):
    """TAID: KL to a student-teacher interpolation whose weight t grows adaptively.

    Shing, Misaki, Bao, Yokoi & Akiba 2025 (ICLR); t goes from t_start to t_end."""

    params = {
        **COMMON,
        "t_start": Param(0.4, "interpolation weight t at the start of training", float, 0.0, 1.0),
        "t_end": Param(1.0, "largest interpolation weight t (reached at the end at the latest)", float, 0.0, 1.0),
        "alpha": Param(5e-4, "step size of the adaptive t update", float, 0.0, 1.0),
        "beta": Param(0.99, "momentum of the relative loss change", float, 0.0, 0.9999),
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        hp = self.hp
        if hp["t_end"] < hp["t_start"]:
            raise ConfigError.at("params.t_end", f"must be >= t_start ({hp['t_start']}), got {hp['t_end']}")
        self.taid = TAID(hp["t_start"], hp["t_end"], hp["alpha"], hp["beta"])
        self._last: Tensor | None = None

    def divergence(self, s_logits: Tensor, t_logits: Teacher) -> Tensor:
        loss = self.taid.loss(s_logits, t_logits, self.hp["temperature"])
        self._last = loss.detach()
        return loss

    def on_step(self, progress: float, terms: dict[str, float]) -> None:
        """Advance t with the step's unweighted TAID loss (``terms["kd"] / kd_weight``, else the last one seen)."""
        w = self.hp["kd_weight"]
        if w > 0 and "kd" in terms:
            value = float(terms["kd"]) / w
        elif self._last is not None:
            value = float(self._last)
        else:
            return
        self.taid.update(progress, value)

    def state(self) -> dict:
        return self.taid.state_dict()

    def load_state(self, d: dict) -> None:
        self.taid.load_state_dict(d)

    def info(self) -> dict[str, float]:
        return {"taid_t": self.taid.t}
