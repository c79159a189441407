"""kdlab.text.losses: each divergence against an explicit numpy sum over a tiny vocabulary, its properties, the
top-k (sparse teacher) versions, numerics at extreme logits, TAID's schedule and the LM_METHODS registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.taid import taid_loss, taid_target
from kdlab.errors import ConfigError
from kdlab.text import losses as L
from kdlab.text.losses import (
    LM_METHODS,
    TAID,
    TopK,
    create_lm_method,
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    student_log_probs,
    taid_token_loss,
    topk_forward_kl,
    total_variation,
)

N, V = 5, 7


def _logits(seed: int, scale: float = 3.0, n: int = N, v: int = V) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g, dtype=torch.float64) * scale)


def _softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = z / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row KL(p || q) as an explicit double loop."""
    out = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            if p[i, j] > 0:
                out[i] += p[i, j] * math.log(p[i, j] / q[i, j])
    return out


def _close(a: torch.Tensor, b: float, tol: float = 1e-10) -> None:
    assert abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b))), (float(a), float(b))


# ------------------------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_divergences_match_explicit_numpy_sums(temperature):
    s, t = _logits(0), _logits(1)
    ps, pt = _softmax(s.numpy(), temperature), _softmax(t.numpy(), temperature)
    _close(forward_kl(s, t, temperature), _np_kl(pt, ps).mean())
    _close(reverse_kl(s, t, temperature), _np_kl(ps, pt).mean())
    for beta in (0.1, 0.5, 0.9):
        m = beta * pt + (1 - beta) * ps
        want = (beta * _np_kl(pt, m) + (1 - beta) * _np_kl(ps, m)).mean()
        _close(generalized_jsd(s, t, beta, temperature), want)
    for alpha in (0.1, 0.6):
        _close(skew_kl(s, t, alpha, temperature), _np_kl(pt, alpha * pt + (1 - alpha) * ps).mean())
        _close(skew_reverse_kl(s, t, alpha, temperature), _np_kl(ps, alpha * ps + (1 - alpha) * pt).mean())
    _close(total_variation(s, t, temperature), (0.5 * np.abs(pt - ps).sum(axis=1)).mean())


def test_no_temperature_squared_factor_and_mean_over_tokens():
    s, t = _logits(2), _logits(3)
    per_token = _np_kl(_softmax(t.numpy(), 4.0), _softmax(s.numpy(), 4.0))
    _close(forward_kl(s, t, 4.0), per_token.mean())  # not 16 * ..., not the sum
    # leading dims are flattened: [2, N, V] gives the mean over all 2N tokens
    s2, t2 = torch.stack([s, _logits(4)]), torch.stack([t, _logits(5)])
    both = np.concatenate([per_token, _np_kl(_softmax(t2[1].numpy(), 4.0), _softmax(s2[1].numpy(), 4.0))])
    _close(forward_kl(s2, t2, 4.0), both.mean())


# ----------------------------------------------------------------------------------------- properties
def test_zero_when_student_equals_teacher():
    z = _logits(6)
    for value in (forward_kl(z, z), reverse_kl(z, z), generalized_jsd(z, z, 0.3), skew_kl(z, z, 0.2),
                  skew_reverse_kl(z, z, 0.2), total_variation(z, z), L.taid_token_loss(z, z, 0.7)):
        assert abs(float(value)) < 1e-12


def test_gjsd_endpoints_are_the_kls_and_half_is_symmetric():
    s, t = _logits(7), _logits(8)
    _close(generalized_jsd(s, t, 0.0, 1.5), forward_kl(s, t, 1.5))
    _close(generalized_jsd(s, t, 1.0, 1.5), reverse_kl(s, t, 1.5))
    _close(generalized_jsd(s, t, 0.5), generalized_jsd(t, s, 0.5))
    assert abs(float(generalized_jsd(s, t, 0.3)) - float(generalized_jsd(t, s, 0.3))) > 1e-4  # only at 0.5
    # near the endpoints the mixture form tends to the KLs
    _close(generalized_jsd(s, t, 1e-7) / 1e-7, forward_kl(s, t), 1e-4)
    assert float(generalized_jsd(s, t, 0.5)) <= math.log(2) + 1e-12  # JSD is bounded by log 2


def test_skew_endpoints():
    s, t = _logits(9), _logits(10)
    _close(skew_kl(s, t, 0.0), forward_kl(s, t))
    _close(skew_reverse_kl(s, t, 0.0), reverse_kl(s, t))
    assert abs(float(skew_kl(s, t, 1.0))) < 1e-12 and abs(float(skew_reverse_kl(s, t, 1.0))) < 1e-12
    # more skew, smaller divergence
    assert float(skew_kl(s, t, 0.5)) < float(skew_kl(s, t, 0.1)) < float(forward_kl(s, t))


def test_tv_in_unit_interval_and_reaches_its_bounds():
    for seed in range(5):
        v = float(total_variation(_logits(seed, 10.0), _logits(seed + 50, 10.0)))
        assert 0.0 <= v <= 1.0
    s = torch.tensor([[100.0, 0.0, 0.0]])
    t = torch.tensor([[0.0, 100.0, 0.0]])
    assert abs(float(total_variation(s, t)) - 1.0) < 1e-6


# ------------------------------------------------------------------------------------------------ top-k
def _topk(t: torch.Tensor, k: int) -> TopK:
    lp = torch.log_softmax(t, dim=-1)
    values, indices = lp.topk(k, dim=-1)
    return TopK(values, indices)


def test_topk_with_k_equal_v_equals_dense():
    s, t = _logits(11), _logits(12)
    tk = _topk(t, V)

    def close(a, b):  # the empty rest bucket is floored at 1e-8: equal to that
        _close(a, b, tol=1e-7)

    for temperature in (1.0, 2.0):
        close(forward_kl(s, tk, temperature), forward_kl(s, t, temperature))
        close(topk_forward_kl(s, tk, temperature), forward_kl(s, t, temperature))
        for beta in (0.0, 0.3, 0.5):
            close(generalized_jsd(s, tk, beta, temperature), generalized_jsd(s, t, beta, temperature))
        close(skew_kl(s, tk, 0.2, temperature), skew_kl(s, t, 0.2, temperature))
        close(skew_reverse_kl(s, tk, 0.2, temperature), skew_reverse_kl(s, t, 0.2, temperature))
        close(reverse_kl(s, tk, temperature), reverse_kl(s, t, temperature))
        close(total_variation(s, tk, temperature), total_variation(s, t, temperature))


def _np_buckets(p_full: np.ndarray, idx: np.ndarray, temperature: float) -> np.ndarray:
    """[N, k + 1]: the k tokens ``idx`` then the rest, from full T = 1 probabilities, then tempered (rest floored)."""
    b = np.stack([np.append(row[i], 1.0 - row[i].sum()) for row, i in zip(p_full, idx, strict=True)])
    b = b ** (1.0 / temperature)
    b = b / b.sum(axis=1, keepdims=True)
    b[:, -1] = np.maximum(b[:, -1], 1e-8)
    return b / b.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_small_k_matches_the_k_plus_one_bucket_divergences_explicitly(temperature):
    s, t = _logits(13), _logits(14)
    k = 3
    tk = _topk(t, k)
    idx = tk.indices.numpy()
    q = _np_buckets(_softmax(t.numpy(), 1.0), idx, temperature)  # teacher: its top-k, then the rest
    ps = _np_buckets(_softmax(s.numpy(), 1.0), idx, temperature)  # student on the same buckets
    _close(forward_kl(s, tk, temperature), _np_kl(q, ps).mean())
    _close(reverse_kl(s, tk, temperature), _np_kl(ps, q).mean())
    beta = 0.4
    m = beta * q + (1 - beta) * ps
    _close(generalized_jsd(s, tk, beta, temperature), (beta * _np_kl(q, m) + (1 - beta) * _np_kl(ps, m)).mean())
    _close(generalized_jsd(s, tk, 1.0, temperature), _np_kl(ps, q).mean())
    _close(skew_kl(s, tk, 0.3, temperature), _np_kl(q, 0.3 * q + 0.7 * ps).mean())
    _close(skew_reverse_kl(s, tk, 0.3, temperature), _np_kl(ps, 0.3 * ps + 0.7 * q).mean())
    _close(total_variation(s, tk, temperature), (0.5 * np.abs(q - ps).sum(axis=1)).mean())


def test_topk_keeps_the_students_mass_on_the_teachers_tokens_unbiased():
    """Renormalising the teacher over its top-k would pull a student that already matches the teacher towards
    putting all its mass on those k tokens; with the rest bucket, the teacher itself is a minimum (zero loss and
    zero gradient)."""
    t = _logits(21).requires_grad_(False)
    s = t.clone().requires_grad_(True)
    loss = forward_kl(s, _topk(t, 3))
    loss.backward()
    assert float(loss.detach()) < 1e-6 and float(s.grad.abs().max()) < 1e-6


def test_topk_refused_by_taid_naming_the_methods_that_can():
    s, t = _logits(15), _logits(16)
    tk = _topk(t, 3)
    with pytest.raises(ConfigError, match="methods that can: ") as err:
        create_lm_method("taid", {}).terms(s, tk)
    can = str(err.value).split("methods that can: ")[1].split(", ")
    assert {"forward_kl", "reverse_kl", "gjsd", "skew_kl", "skew_reverse_kl", "tv"} <= set(can)
    assert not {"taid", "none"} & set(can)
    for name in ("reverse_kl", "gjsd", "skew_reverse_kl"):  # finite on the buckets, even at their endpoints
        params = {"beta": 1.0} if name == "gjsd" else {"alpha": 0.0} if name == "skew_reverse_kl" else {}
        assert torch.isfinite(create_lm_method(name, params).terms(s, _topk(t, V))["kd"])
    assert create_lm_method("reverse_kl", {}).accepts_topk and not create_lm_method("taid", {}).accepts_topk


# --------------------------------------------------------------------------------------------- numerics
def test_float32_large_logits_and_masked_entries_are_finite_with_finite_gradients():
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(4, 9, generator=g) * 1e4).requires_grad_(True)
    t = torch.randn(4, 9, generator=g) * 1e4
    fns = [forward_kl, reverse_kl, total_variation, lambda a, b: generalized_jsd(a, b, 0.5),
           lambda a, b: skew_kl(a, b, 0.1), lambda a, b: skew_reverse_kl(a, b, 0.1),
           lambda a, b: L.taid_token_loss(a, b, 0.5)]
    for fn in fns:
        value = fn(s, t)
        assert value.dtype == torch.float32 and torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, s)
        assert torch.isfinite(grad).all()
    # tokens masked out of both distributions with -inf (e.g. vocab padding) change nothing and give no NaN
    s0, t0 = _logits(17).float(), _logits(18).float()
    pad = torch.full((N, 3), float("-inf"))
    sp, tp = torch.cat([s0, pad], 1).requires_grad_(True), torch.cat([t0, pad], 1)
    for fn in fns:
        value = fn(sp, tp)
        assert abs(float(value.detach()) - float(fn(s0, t0))) < 1e-5
        (grad,) = torch.autograd.grad(value, sp)
        assert torch.isfinite(grad).all() and (grad[:, V:] == 0).all()
    # half precision inputs are computed in float32
    assert forward_kl(s0.half(), t0.half()).dtype == torch.float32


# ------------------------------------------------------------------------------------------------- TAID
def test_taid_target_interpolates_and_matches_kdlab_distill():
    s, t = _logits(19), _logits(20)
    for interp in (0.0, 0.3, 1.0):
        want = taid_loss(s, t, interp)  # the classification TAID (batchmean over rows = per-token mean)
        _close(L.taid_token_loss(s, t, interp), want)
        target = taid_target(s, t, interp).numpy()
        _close(L.taid_token_loss(s, t, interp), _np_kl(target, _softmax(s.numpy())).mean())
    _close(L.taid_token_loss(s, t, 1.0), forward_kl(s, t))  # t = 1: the teacher itself
    assert abs(float(L.taid_token_loss(s, t, 0.0))) < 1e-12  # t = 0: the student itself
    # the gradient does not flow through the target (the student is detached inside it)
    s_req = s.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(L.taid_token_loss(s_req, t, 0.5), s_req)
    p_target = torch.tensor(taid_target(s, t, 0.5).numpy())
    torch.testing.assert_close(g, (torch.softmax(s, -1) - p_target) / N)


def test_taid_t_moves_monotonically_from_t_start_to_t_end():
    taid = TAID(t_start=0.2, t_end=0.9, alpha=0.05, beta=0.5)
    ts = [taid.t]
    for step in range(200):
        taid.update(step / 400, 1.0 / (1 + step))  # decreasing loss, only half-way through training
        ts.append(taid.t)
    assert ts[0] == 0.2 and all(b >= a for a, b in zip(ts, ts[1:], strict=False))
    assert ts[-1] > 0.2 + (0.9 - 0.2) * 199 / 400 + 0.05  # adaptive: ahead of the linear schedule
    assert ts[-1] <= 0.9
    for _ in range(200):
        taid.update(1.0, 1.0)
    assert abs(taid.t - 0.9) < 1e-12
    # disable_adaptive: exactly the linear schedule
    lin = TAID(t_start=0.4, t_end=1.0, disable_adaptive=True)
    for p in (0.0, 0.25, 0.5, 1.0):
        lin.update(p, 1.0 / (1 + p))
        assert abs(lin.t - (0.4 + 0.6 * p)) < 1e-12
    # state round-trips
    other = TAID()
    other.load_state_dict(taid.state_dict())
    assert other.state_dict() == taid.state_dict()


def test_taid_method_steps_its_schedule_and_reports_t():
    m = create_lm_method("taid", {"t_start": 0.3, "alpha": 0.1, "kd_weight": 2.0})
    s, t = _logits(21), _logits(22)
    assert m.info() == {"taid_t": 0.3}
    terms = m.terms(s, t)
    _close(terms["kd"], 2.0 * float(L.taid_token_loss(s, t, 0.3)))
    for step in range(5):
        m.on_step(step / 100, {"kd": 2.0 / (1 + step), "ce": 3.0})
    assert m.info()["taid_t"] > 0.3 + 0.7 * 0.04 + 0.05  # adaptive steps, ahead of the linear schedule
    saved = m.state()
    m2 = create_lm_method("taid", {"t_start": 0.3})
    m2.load_state(saved)
    assert m2.info() == m.info()


# --------------------------------------------------------------------------------------------- registry
def test_registry_names_params_and_terms():
    assert set(LM_METHODS.names()) >= {"none", "forward_kl", "reverse_kl", "gjsd", "skew_kl", "skew_reverse_kl",
                                       "tv", "taid"}
    for name in ("forward_kl", "reverse_kl", "gjsd", "skew_kl", "skew_reverse_kl", "tv", "taid"):
        entry = LM_METHODS.entry(name)
        assert {"temperature", "kd_weight"} <= set(entry.params), name
        assert entry.obj.__doc__ and "20" in entry.obj.__doc__  # cites a paper with its year
    s, t = _logits(23), _logits(24)
    m = create_lm_method("gjsd", {"beta": 0.2, "temperature": 2.0, "kd_weight": 3.0})
    _close(m.terms(s, t)["kd"], 3.0 * float(generalized_jsd(s, t, 0.2, 2.0)))
    assert create_lm_method("none", {}).terms(s, t) == {} and not create_lm_method("none").uses_teacher_logits
    _close(create_lm_method("skew_kl").terms(s, t)["kd"], float(skew_kl(s, t, 0.1)))  # defaults


def test_registry_validation_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"method\.params\.beta"):
        create_lm_method("gjsd", {"beta": 1.5})
    with pytest.raises(ConfigError, match=r"run\.method\.params\.temperature"):
        create_lm_method("forward_kl", {"temperature": 0.0}, where="run.method")
    with pytest.raises(ConfigError, match=r"method\.params\.alpah.*valid: alpha, kd_weight, temperature"):
        create_lm_method("skew_kl", {"alpah": 0.2})
    with pytest.raises(KeyError, match=r"method: unknown LM distillation method 'gsjd'.*gjsd"):
        create_lm_method("gsjd", {})
    with pytest.raises(ConfigError, match="t_end"):
        create_lm_method("taid", {"t_start": 0.8, "t_end": 0.5})


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_student_log_probs_shared_with_the_cross_entropy_give_the_same_divergences(temperature):
    s, t = _logits(31), _logits(32)
    logp = torch.log_softmax(s, -1)
    tk = _topk(t, 4)
    calls = [lambda x, te: forward_kl(x, te, temperature), lambda x, te: reverse_kl(x, te, temperature),
             lambda x, te: generalized_jsd(x, te, 0.3, temperature), lambda x, te: skew_kl(x, te, 0.2, temperature),
             lambda x, te: total_variation(x, te, temperature)]
    for call in calls:
        for teacher in (t, tk):
            with student_log_probs():
                shared = call(logp, teacher)
            _close(shared, call(s, teacher), tol=1e-9)
    with student_log_probs():
        shared = taid_token_loss(logp, t, 0.6, temperature)
    _close(shared, taid_token_loss(s, t, 0.6, temperature), tol=1e-9)
    # outside the block, log-probs are treated as logits again (the same at T = 1 up to rounding, by shift
    # invariance), and raw logits inside the block at T = 1 would be taken as log-probs: the block is the contract
    with student_log_probs():
        wrong = forward_kl(s, t, 1.0)
    assert abs(float(wrong) - float(forward_kl(s, t, 1.0))) > 1e-3


# ------------------------------------------------------------------------------ arguments, defaults, errors
def test_documented_defaults():
    s, t = _logits(40), _logits(41)
    tk = _topk(t, 3)
    _close(topk_forward_kl(s, tk), topk_forward_kl(s, tk, 1.0))
    _close(generalized_jsd(s, t), generalized_jsd(s, t, 0.5, 1.0))
    _close(skew_kl(s, t), skew_kl(s, t, 0.1, 1.0))
    _close(skew_reverse_kl(s, t), skew_reverse_kl(s, t, 0.1, 1.0))
    _close(total_variation(s, t), total_variation(s, t, 1.0))
    # the TAID schedule's defaults are the registered method's (and kdlab.distill's TAID's: the paper's)
    taid, declared = TAID(), LM_METHODS.entry("taid").params
    assert (taid.t_start, taid.t_end, taid.alpha, taid.beta) == tuple(
        declared[k].default for k in ("t_start", "t_end", "alpha", "beta")) == (0.4, 1.0, 5e-4, 0.99)
    _close(taid.loss(s, t), taid_token_loss(s, t, 0.4, 1.0))


def test_out_of_range_arguments_are_refused_naming_the_argument():
    s, t = _logits(42), _logits(43)
    for temperature in (0.0, -1.0):
        with pytest.raises(ConfigError, match="temperature"):
            forward_kl(s, t, temperature)
        with pytest.raises(ConfigError, match="temperature"):
            forward_kl(s, _topk(t, 3), temperature)
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="beta"):
            generalized_jsd(s, t, bad)
        with pytest.raises(ConfigError, match="alpha"):
            skew_kl(s, t, bad)
        with pytest.raises(ConfigError, match="alpha"):
            skew_reverse_kl(s, t, bad)
    for t_start, t_end in ((-0.1, 1.0), (0.5, 1.5), (0.8, 0.5)):
        with pytest.raises(ConfigError, match="t_end"):
            TAID(t_start, t_end)
    # the closed ends are allowed: t from 0, and a constant t (t_start = t_end), also through the registry
    assert TAID(0.0, 1.0).t == 0.0 and TAID(0.6, 0.6).t == 0.6
    m = create_lm_method("taid", {"t_start": 0.6, "t_end": 0.6, "alpha": 0.5})
    m.on_step(0.5, {"kd": 1.0})
    m.on_step(0.9, {"kd": 0.1})
    assert m.info() == {"taid_t": 0.6}


def test_shape_errors_name_student_and_teacher():
    from kdlab.errors import ShapeError

    s = _logits(44)
    with pytest.raises(ShapeError, match=r"student logits \(5, 7\) and teacher logits \(5, 8\) differ"):
        forward_kl(s, _logits(45, v=8))
    tk = _topk(_logits(46), 3)
    with pytest.raises(ShapeError, match="TopK values"):  # values and indices disagree (same leading shape)
        forward_kl(s, TopK(tk.values, tk.indices[:, :2]))
    with pytest.raises(ShapeError, match="TopK values"):  # consistent top-k for another number of tokens
        forward_kl(s, _topk(_logits(47, n=N + 1), 3))


def test_skew_endpoint_alpha_one_has_no_gradient_even_where_the_teacher_rules_tokens_out():
    """At alpha = 1 the mixture is the teacher itself (exact): the loss is 0 and gives the student no gradient, not
    NaN, also where the teacher has probability 0 (logit -inf) and the student does not."""
    s = _logits(48).requires_grad_(True)
    t = _logits(49)
    t[:, 2] = float("-inf")
    loss = skew_kl(s, t, 1.0) + skew_reverse_kl(s, t, 1.0)
    (grad,) = torch.autograd.grad(loss + s.sum(), s)
    assert float(loss.detach()) == 0.0 and torch.equal(grad, torch.ones_like(s))


# ----------------------------------------------------------------------------------- methods, TAID steps
def test_methods_compute_their_divergence_of_student_against_teacher():
    s, t = _logits(50), _logits(51)
    tk = _topk(t, 3)
    for name, fn in (("forward_kl", forward_kl), ("reverse_kl", reverse_kl), ("tv", total_variation)):
        for teacher in (t, tk):
            _close(create_lm_method(name, {"kd_weight": 2.0}).terms(s, teacher)["kd"], 2.0 * float(fn(s, teacher)))
    for name in ("forward_kl", "reverse_kl", "gjsd", "skew_kl", "skew_reverse_kl", "tv", "taid"):
        cls, tags = LM_METHODS.get(name), LM_METHODS.entry(name).tags
        assert cls.uses_teacher_logits and cls.same_vocab, name  # the trainer runs the teacher; one vocabulary
        assert tags["uses_teacher_logits"] and tags["same_vocab"], name


def test_methods_built_directly_validate_their_params():
    m = L.ForwardKL()
    assert m.hp == {"temperature": 1.0, "kd_weight": 1.0}
    with pytest.raises(ConfigError, match="temperature"):
        L.ForwardKL(temperature=0.0)

    class Unregistered(L.LMMethod):
        def divergence(self, s_logits, t_logits):
            return forward_kl(s_logits, t_logits)

    assert Unregistered(kd_weight=0.5).hp == {"kd_weight": 0.5}  # not registered: taken as given


def test_taid_schedule_is_kdlab_distills_from_the_first_step():
    """The adaptive schedule is ``taid_next_t`` iterated from momentum 0 and no previous loss (the first step
    only records the loss, even late in training); disable_adaptive follows the linear schedule from the first
    step, whatever its progress."""
    from kdlab.distill.methods.taid import taid_next_t

    taid = TAID(0.2, 0.9, alpha=0.05, beta=0.5)
    t, mom, prev = 0.2, 0.0, math.inf
    for step, loss in enumerate((2.0, 1.0, 1.5, 0.5, 0.4)):
        progress = 0.3 + 0.05 * step
        taid.update(progress, loss)
        t, mom = taid_next_t(t, mom, loss, prev, progress, 0.2, 0.9, 0.05, 0.5)
        prev = loss
        assert (taid.t, taid.momentum, taid.prev_loss) == (t, mom, prev)
    assert taid.t > 0.2
    lin = TAID(0.4, 1.0, disable_adaptive=True)
    for progress, want in ((0.5, 0.7), (0.25, 0.7), (1.0, 1.0)):  # never back down
        lin.update(progress, 1.0)
        assert lin.t == pytest.approx(want, abs=1e-12)
    late = TAID(0.4, 1.0, disable_adaptive=True)
    late.update(1.5, 1.0)  # progress past the end
    assert late.t == 1.0


def _stepped(kd_weight: float, steps) -> tuple[dict, dict]:
    """A TAID method stepped on ``steps`` (progress, terms), and a bare TAID schedule fed what it should be fed:
    ``terms["kd"] / kd_weight`` when there is one and kd_weight > 0, else the last TAID loss computed."""
    s, t = _logits(52), _logits(53)
    m = create_lm_method("taid", {"t_start": 0.3, "alpha": 0.2, "beta": 0.5, "kd_weight": kd_weight})
    ref = TAID(0.3, 1.0, 0.2, 0.5)
    for progress, terms in steps:
        m.terms(s + progress, t)
        last = float(L.taid_token_loss(s + progress, t, ref.t))
        m.on_step(progress, terms)
        ref.update(progress, terms["kd"] / kd_weight if kd_weight > 0 and "kd" in terms else last)
    return m.state(), ref.state_dict()


@pytest.mark.parametrize("kd_weight", [0.0, 0.5, 3.0])
def test_taid_method_feeds_its_schedule_the_unweighted_loss(kd_weight):
    steps = [(0.1, {"kd": 0.8, "ce": 2.0}), (0.2, {"ce": 2.0}), (0.3, {"kd": 0.2}), (0.4, {"kd": 0.1})]
    got, want = _stepped(kd_weight, steps)
    assert got == want and got["t"] > 0.3
    # nothing seen yet and no "kd" term: the schedule does not move
    m = create_lm_method("taid", {"t_start": 0.3})
    m.on_step(0.5, {"ce": 1.0})
    assert m.state() == TAID(0.3).state_dict()


def test_taid_method_keeps_no_autograd_graph_between_steps():
    import gc
    import weakref

    m = create_lm_method("taid")
    s = _logits(54).requires_grad_(True)
    alive = weakref.ref(s)
    m.terms(s, _logits(55))["kd"].backward()
    del s
    gc.collect()
    assert alive() is None  # the last loss is kept detached: no activations held until the next step
    m.on_step(0.5, {})  # and it still feeds the schedule
    assert m.state()["prev_loss"] < math.inf
