"""Contracts every method keeps (issue #19): terms against small independent numpy formulas with the
teacher as the target, each declared weight scaling its term linearly, and functional defaults that agree
with the registered method's defaults. Fast: fixed random logits, tiny models."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from kdlab.distill import METHODS
from kdlab.distill.base import TeacherOutput
from kdlab.distill.methods import at, bdkd, dist, dkd, dml, lskd, ofa, pkt, rkd, sinkhorn_kd, tf_kd

from .helpers import IN, make, np_kd, np_log_softmax, np_softmax, teacher_twin

N, C = 6, 10


def _logits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, (N, C))
    t = rng.normal(0, 3, (N, C))
    y = np.array([0, 3, 9, 3, 5, 1])
    return s, t, y


def _np_kl_rows(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """KL(p || q) per row from log-probabilities."""
    return np.sum(np.exp(lp) * (lp - lq), axis=1)


def ref_dkd(s, t, y, hp):
    temp = hp["temperature"]
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    idx = np.arange(N)
    bs = np.stack([ps[idx, y], 1 - ps[idx, y]], 1)
    bt = np.stack([pt[idx, y], 1 - pt[idx, y]], 1)
    tckd = np.sum(bt * np.log(bt / bs), 1)
    mask = np.ones_like(s, bool)
    mask[idx, y] = False
    rs, rt = s[mask].reshape(N, C - 1) / temp, t[mask].reshape(N, C - 1) / temp
    nckd = _np_kl_rows(np_log_softmax(rt), np_log_softmax(rs))
    return {"tckd": hp["alpha"] * temp**2 * tckd.mean(), "nckd": hp["beta"] * temp**2 * nckd.mean()}


def _np_pearson(a, b, axis):
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


def ref_dist(s, t, y, hp):
    tau = hp["tau"]
    ps, pt = np_softmax(s / tau), np_softmax(t / tau)
    return {"inter": hp["beta"] * tau**2 * (1 - _np_pearson(ps, pt, 1).mean()),
            "intra": hp["gamma"] * tau**2 * (1 - _np_pearson(ps, pt, 0).mean())}


def ref_lskd(s, t, y, hp):
    def z(a):
        return (a - a.mean(1, keepdims=True)) / a.std(1, ddof=1, keepdims=True)
    return {"kd": hp["kd_weight"] * np_kd(z(t), z(s), hp["temperature"])}


def ref_margin_mse(s, t, y, hp):
    idx = np.arange(N)
    mask = np.ones_like(s, bool)
    mask[idx, y] = False
    ms = (s[idx, y][:, None] - s)[mask]
    mt = (t[idx, y][:, None] - t)[mask]
    return {"kd": hp["kd_weight"] * np.mean((ms - mt) ** 2)}


def ref_sinkhorn(s, t, y, hp):
    temp, eps = hp["temperature"], hp["epsilon"]
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    cost = np.abs(ps[:, None, :] - pt[None, :, :]).sum(-1)  # cost[i, j] = |p_s,i - p_t,j|_1
    k = np.exp(-cost / eps)
    for _ in range(hp["n_iters"]):
        k = k / k.sum(1, keepdims=True)
        k = k / k.sum(0, keepdims=True)
    return {"kd": hp["kd_weight"] * np_kd(t, s, temp), "sinkhorn": hp["sinkhorn_weight"] * (k * cost).sum() / N}


def ref_bdkd(s, t, y, hp):
    temp = hp["temperature"]
    ls, lt = np_log_softmax(s / temp), np_log_softmax(t / temp)
    fwd, rev = _np_kl_rows(lt, ls), _np_kl_rows(ls, lt)
    h_s, h_t = -np.sum(np.exp(ls) * ls, 1), -np.sum(np.exp(lt) * lt, 1)
    dom, oth = hp["dominant_weight"], hp["other_weight"]
    less_sure = h_s > h_t  # the student is less sure: the reverse KL dominates
    w_rev, w_fwd = np.where(less_sure, dom, oth), np.where(less_sure, oth, dom)
    return {"kd": hp["kd_weight"] * temp**2 * np.mean(w_fwd * fwd + w_rev * rev)}


def ref_taid(s, t, y, hp):
    tt = hp["t_start"]  # the first step uses t_start
    target = np_log_softmax((1 - tt) * s + tt * t)
    return {"kd": hp["kd_weight"] * _np_kl_rows(target, np_log_softmax(s)).mean()}


def ref_tf_kd(s, t, y, hp):
    q, temp = hp["correct_prob"], hp["temperature"]
    p = np.full((N, C), (1 - q) / (C - 1))
    p[np.arange(N), y] = q
    p = p ** (1 / temp)
    p /= p.sum(1, keepdims=True)
    return {"kd": hp["kd_weight"] * temp**2 * _np_kl_rows(np.log(p), np_log_softmax(s / temp)).mean()}


def ref_kd(s, t, y, hp):
    return {"kd": hp["kd_weight"] * np_kd(t, s, hp["temperature"])}


# method -> (non-default params: weights away from 1 so that `w * term` and `w / term` differ, reference)
LOGIT_REFS = {
    "kd": ({"kd_weight": 1.7, "temperature": 3.0}, ref_kd),
    "born_again": ({"kd_weight": 1.7, "temperature": 3.0}, ref_kd),
    "dkd": ({"alpha": 0.6, "beta": 2.5, "temperature": 3.0, "warmup": 0.0}, ref_dkd),
    "dist": ({"beta": 1.7, "gamma": 0.4, "tau": 2.0}, ref_dist),
    "lskd": ({"kd_weight": 1.7, "temperature": 3.0}, ref_lskd),
    "margin_mse": ({"kd_weight": 1.7}, ref_margin_mse),
    "sinkhorn_kd": ({"kd_weight": 1.7, "sinkhorn_weight": 0.4, "temperature": 3.0, "epsilon": 0.3,
                     "n_iters": 7}, ref_sinkhorn),
    "bdkd": ({"kd_weight": 1.7, "temperature": 3.0, "dominant_weight": 2.5, "other_weight": 0.7}, ref_bdkd),
    "taid": ({"kd_weight": 1.7, "t_start": 0.3, "t_end": 0.9}, ref_taid),
    "tf_kd": ({"kd_weight": 1.7, "correct_prob": 0.8, "temperature": 2.0}, ref_tf_kd),
}


def _run_losses(method: str, params: dict, s: np.ndarray, t: np.ndarray, y: np.ndarray):
    d = make(method, **params)
    d.set_progress(0.5)
    d.train()
    s_t = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    t_t = torch.tensor(t, dtype=torch.float32)
    terms = d.losses(s_t, {}, TeacherOutput(t_t), torch.tensor(y))
    return d, s_t, terms


@pytest.mark.parametrize("method", sorted(LOGIT_REFS))
def test_logit_terms_match_independent_formulas_with_the_teacher_as_target(method):
    params, ref = LOGIT_REFS[method]
    s, t, y = _logits()
    d, s_t, terms = _run_losses(method, params, s, t, y)
    want = ref(s, t, y, {**{k: p.default for k, p in METHODS.get(method).params.items()}, **params})
    assert set(want) | {"ce"} == set(terms)
    for name, value in want.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
    ce = -np_log_softmax(s)[np.arange(N), y].mean()
    assert terms["ce"].item() == pytest.approx(d.hp["ce_weight"] * ce, rel=1e-5)
    # every distillation term sends gradient to the student's logits
    for name in want:
        (g,) = torch.autograd.grad(terms[name], s_t, retain_graph=True)
        assert g.abs().sum() > 0, name


@pytest.mark.parametrize("method", sorted(LOGIT_REFS))
def test_logit_terms_vanish_when_the_student_equals_the_teacher(method):
    if method in ("tf_kd", "sinkhorn_kd"):
        pytest.skip("no teacher (tf_kd) / entropic transport cost is not zero at identity (sinkhorn_kd)")
    params, _ = LOGIT_REFS[method]
    s, t, y = _logits()
    _, _, terms = _run_losses(method, params, t, t, y)
    for name, v in terms.items():
        if name != "ce":
            assert abs(v.item()) < 1e-5, name


def test_dml_is_kl_both_ways_with_the_weights_and_temperature():
    s, t, y = _logits()
    a = torch.tensor(s, dtype=torch.float32)
    b = torch.tensor(t, dtype=torch.float32)
    got = dml.mutual_losses(a, b, torch.tensor(y), 3.0, 0.6, 1.7)
    ce_a = -np_log_softmax(s)[np.arange(N), y].mean()
    ce_b = -np_log_softmax(t)[np.arange(N), y].mean()
    assert got["ce"].item() == pytest.approx(0.6 * ce_a, rel=1e-5)
    assert got["peer_ce"].item() == pytest.approx(0.6 * ce_b, rel=1e-5)
    assert got["kl"].item() == pytest.approx(1.7 * np_kd(t, s, 3.0), rel=1e-4)  # a learns from b
    assert got["peer_kl"].item() == pytest.approx(1.7 * np_kd(s, t, 3.0), rel=1e-4)


def test_dml_forward_train_gives_the_student_the_kl_towards_its_peer():
    d = make("dml", kd_weight=1.7, temperature=3.0, ce_weight=0.6)
    d.train()
    x, y = torch.randn(4, *IN), torch.arange(4)
    logits, terms = d.forward_train(x, y)
    peer = d.teacher(x)
    want = dml.mutual_losses(logits, peer, y, 3.0, 0.6, 1.7)
    for k in want:
        assert terms[k].item() == pytest.approx(want[k].item(), rel=1e-5), k


# ------------------------------------------------------------------------------ every declared weight

WEIGHTS = sorted((m, w) for m in METHODS.names() for w in METHODS.get(m).params
                 if w.endswith("_weight") and w not in ("dominant_weight", "other_weight")
                 and m not in ("unlabelled", "fixmatch", "distill_nearest", "distill_weighted"))


def _terms(method: str, **params) -> dict[str, float]:
    d = make(method, **params)
    d.set_progress(1.0)
    d.train()
    torch.manual_seed(3)
    x, y = torch.randn(4, *IN), torch.arange(4)
    _, terms = d.forward_train(x, y)
    return {k: v.item() for k, v in terms.items()}


@pytest.mark.parametrize(("method", "weight"), WEIGHTS, ids=[f"{m}-{w}" for m, w in WEIGHTS])
def test_each_weight_scales_its_terms_linearly(method, weight):
    one, more, zero = (_terms(method, **{weight: w}) for w in (1.0, 2.5, 0.0))
    scaled = [k for k in one if abs(more[k] - one[k]) > 1e-5 * abs(one[k])]
    assert scaled, f"{weight} changes no term"
    for k in one:
        if k in scaled:
            assert more[k] == pytest.approx(2.5 * one[k], rel=1e-4), k
            assert abs(zero[k]) <= 1e-6 * abs(one[k]), k
        else:
            assert zero[k] == pytest.approx(one[k], rel=1e-5), k


# ------------------------------------------------------------------------------ feature methods

@pytest.mark.parametrize("method", ["at", "nst", "pkt", "rkd", "nd"])
def test_feature_terms_vanish_for_a_student_identical_to_the_teacher(method):
    twin = teacher_twin(make(method))
    twin.train()
    x, y = torch.randn(5, *IN), torch.arange(5)
    _, terms = twin.forward_train(x, y)
    names = {"at": ["at"], "nst": ["nst"], "pkt": ["pkt"], "rkd": ["rkd_distance", "rkd_angle"], "nd": ["kd"]}
    for name in names[method]:
        assert abs(terms[name].item()) < 1e-4, name


def _np_densities(e):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    k = (e @ e.T + 1) / 2
    return k / k.sum(1, keepdims=True)


def test_pkt_is_the_kl_from_the_teacher_densities():
    rng = np.random.default_rng(1)
    es, et = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    ps, pt = _np_densities(es), _np_densities(et)
    want = np.mean(pt * np.log(pt / ps))
    got = pkt.pkt_loss(torch.tensor(es, dtype=torch.float32), torch.tensor(et, dtype=torch.float32))
    assert got.item() == pytest.approx(want, rel=1e-3)
    d = make("pkt", feat_weight=2.0)
    fs = torch.tensor(es, dtype=torch.float32)[:, :, None, None]
    ft = torch.tensor(et, dtype=torch.float32)[:, :, None, None]
    (ls, lt), = [(s, t) for s, t in zip(d.student_layers, d.teacher_layers, strict=True)]
    terms = d.losses(torch.zeros(5, 10), {ls: fs}, TeacherOutput(torch.zeros(5, 10), {lt: ft}), torch.arange(5))
    assert terms["pkt"].item() == pytest.approx(2.0 * want, rel=1e-3)


def test_rkd_terms_against_distance_and_angle_formulas():
    rng = np.random.default_rng(2)
    es, et = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))

    def dist_n(e):
        dd = np.linalg.norm(e[:, None] - e[None], axis=-1)
        return dd / dd[~np.eye(len(e), dtype=bool)].mean()

    def ang(e):
        diff = e[None, :, :] - e[:, None, :]  # diff[i, j] = e_j - e_i
        u = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-12)
        return np.einsum("ijd,ikd->ijk", u, u)

    def huber(a, b):
        r = np.abs(a - b)
        return np.mean(np.where(r < 1, 0.5 * r**2, r - 0.5))

    ts, tt = torch.tensor(es, dtype=torch.float32), torch.tensor(et, dtype=torch.float32)
    assert rkd.rkd_distance_loss(ts, tt).item() == pytest.approx(huber(dist_n(es), dist_n(et)), rel=1e-4)
    assert rkd.rkd_angle_loss(ts, tt).item() == pytest.approx(huber(ang(es), ang(et)), rel=1e-4)
    d = make("rkd", distance_weight=3.0, angle_weight=0.5)
    (ls, lt), = [(s, t) for s, t in zip(d.student_layers, d.teacher_layers, strict=True)]
    terms = d.losses(torch.zeros(5, 10), {ls: ts}, TeacherOutput(torch.zeros(5, 10), {lt: tt}), torch.arange(5))
    assert terms["rkd_distance"].item() == pytest.approx(3.0 * huber(dist_n(es), dist_n(et)), rel=1e-4)
    assert terms["rkd_angle"].item() == pytest.approx(0.5 * huber(ang(es), ang(et)), rel=1e-4)


# ------------------------------------------------------------------------------ functional defaults

DEFAULTS = [
    (dkd.dkd_loss, "dkd", ["alpha", "beta", "temperature"]),
    (dkd.dkd_terms, "dkd", ["temperature"]),
    (dist.dist_loss, "dist", ["beta", "gamma", "tau"]),
    (dist.dist_terms, "dist", ["tau"]),
    (lskd.lskd_loss, "lskd", ["temperature"]),
    (sinkhorn_kd.sinkhorn_kd_loss, "sinkhorn_kd", ["temperature", "epsilon", "n_iters"]),
    (sinkhorn_kd.sinkhorn_plan, "sinkhorn_kd", ["epsilon", "n_iters"]),
    (tf_kd.tf_kd_loss, "tf_kd", ["correct_prob", "temperature"]),
    (tf_kd.virtual_teacher, "tf_kd", ["correct_prob", "temperature"]),
    (bdkd.bd_kd_loss, "bdkd", ["dominant_weight", "other_weight"]),
    (rkd.rkd_loss, "rkd", ["distance_weight", "angle_weight"]),
    (at.attention_map, "at", ["p"]),
    (at.at_loss, "at", ["p"]),
]


@pytest.mark.parametrize(("fn", "method", "names"), DEFAULTS, ids=[f.__name__ for f, _, _ in DEFAULTS])
def test_functional_defaults_agree_with_the_method_defaults(fn, method, names):
    sig = inspect.signature(fn).parameters
    for name in names:
        assert sig[name].default == METHODS.get(method).params[name].default, name


def test_functional_defaults_of_the_plain_formulas():
    """Functions whose defaults are the neutral ones: T = 1 (bdkd, dml), OFA's eps 1, pearson over rows."""
    for fn, name, value in [(bdkd.bd_kd_loss, "temperature", 1.0), (bdkd.entropy, "temperature", 1.0),
                            (dml.mutual_losses, "temperature", 1.0), (dml.mutual_losses, "ce_weight", 1.0),
                            (dml.mutual_losses, "kd_weight", 1.0), (ofa.ofa_loss, "eps", 1.0),
                            (ofa.ofa_loss, "temperature", 1.0), (dist.pearson, "dim", 1)]:
        assert inspect.signature(fn).parameters[name].default == value, (fn.__name__, name)


# ------------------------------------------------------------------------------ small per-method facts

def test_born_again_names_the_first_differing_tensor_teacher_shape_first():
    from kdlab.distill.methods.born_again import architecture_mismatch
    from kdlab.models import create
    teacher, student = create("convnet", 10, IN, width=16), create("convnet", 10, IN, width=8)
    n_diff = sum(a.shape != b.shape for a, b in zip(teacher.state_dict().values(),
                                                     student.state_dict().values(), strict=True))
    first = min(k for k in teacher.state_dict() if teacher.state_dict()[k].shape != student.state_dict()[k].shape)
    why = architecture_mismatch(teacher, student)
    t_shape, s_shape = tuple(teacher.state_dict()[first].shape), tuple(student.state_dict()[first].shape)
    assert why == (f"teacher and student ConvNets differ in {n_diff} tensors (first: {first!r}: {t_shape} vs "
                   f"{s_shape})")
    assert architecture_mismatch(teacher, create("convnet", 10, IN, width=16)) is None


def test_dho_mixes_the_ce_head_with_alpha_and_the_kd_head_with_the_inference_temperature():
    from kdlab.distill.methods.dho import dual_head_log_probs
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    want = np.log(0.3 * np_softmax(a) + 0.7 * np_softmax(b / 2.0))
    got = dual_head_log_probs(torch.tensor(a), torch.tensor(b), 0.3, 2.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert inspect.signature(dual_head_log_probs).parameters["infer_temperature"].default == 1.0
    d = make("dho", alpha=0.3, infer_temperature=2.0)
    d.train()
    x, y = torch.randn(3, *IN), torch.arange(3)
    mixed, _ = d.forward_train(x, y)
    ce_logits, kd_logits = d.heads(x)
    want = torch.log(0.3 * ce_logits.softmax(1) + 0.7 * (kd_logits / 2.0).softmax(1))
    torch.testing.assert_close(mixed, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("c", [2, 3])
def test_dkd_works_from_two_classes(c):
    s, t = torch.randn(4, c), torch.randn(4, c)
    tckd, nckd = dkd.dkd_terms(s, t, torch.tensor([0, 1, 0, 1]))
    assert torch.isfinite(tckd).all() and torch.isfinite(nckd).all()
    if c == 2:  # one non-target class: nothing to distribute among non-targets
        assert torch.allclose(nckd, torch.zeros(4))


def test_freq_kd_band_mse_splits_the_mse_of_non_square_maps_by_frequency():
    from kdlab.distill.methods.freq_kd import band_mse
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 3, 4, 6)), rng.normal(size=(2, 3, 4, 6))
    low, high = band_mse(torch.tensor(a), torch.tensor(b), 0.5)
    power = np.abs(np.fft.fft2(a - b)) ** 2 / 24
    fy, fx = np.fft.fftfreq(4)[:, None] / 0.5, np.fft.fftfreq(6)[None, :] / 0.5  # fraction of Nyquist
    mask = np.sqrt(fy**2 + fx**2) <= 0.5
    assert low.item() == pytest.approx((power * mask).sum() / a.size, rel=1e-6)
    assert (low + high).item() == pytest.approx(np.mean((a - b) ** 2), rel=1e-6)


@pytest.mark.parametrize("weight", ["low_weight", "high_weight"])
def test_freq_kd_feature_band_weights_scale_their_terms(weight):
    one, more, zero = (_terms("freq_kd", target="features", **{weight: w}) for w in (1.0, 2.5, 0.0))
    name = "feat_low" if weight == "low_weight" else "feat_high"
    assert one[name] > 0 and more[name] == pytest.approx(2.5 * one[name], rel=1e-5) and zero[name] == 0.0
    other = "feat_high" if name == "feat_low" else "feat_low"
    assert more[other] == pytest.approx(one[other], rel=1e-6) and one[other] > 0


def test_freq_kd_band_terms_are_kd_on_the_filtered_images_and_sum_the_feature_mses():
    from kdlab.distill.methods.freq_kd import split_bands
    d = make("freq_kd", temperature=3.0, cutoff=0.3)
    d.train()
    x, y = torch.randn(4, *IN), torch.arange(4)
    _, terms = d.forward_train(x, y)
    for name, part in zip(("kd_low", "kd_high"), split_bands(x, 0.3), strict=True):
        with torch.no_grad():
            want = np_kd(d.teacher(part).numpy(), d.student(part).numpy(), 3.0)
        assert terms[name].item() == pytest.approx(want, rel=1e-4), name
    d = make("freq_kd", target="features")
    d.train()
    with torch.no_grad():
        t_out = d.teacher_forward(x)
        _, feats = d.student_forward(x)
        _, terms = d.forward_train(x, y, t_out)
        mse = sum(torch.mean((a(s) - t) ** 2) for a, (s, t) in zip(d.adapters, d.layer_pairs(feats, t_out),
                                                                      strict=True))
    assert len(d.adapters) > 1
    assert (terms["feat_low"] + terms["feat_high"]).item() == pytest.approx(mse.item(), rel=1e-5)


def test_nd_loss_against_its_formula_for_small_embeddings():
    from kdlab.distill.methods.nd import nd_loss
    rng = np.random.default_rng(6)
    s, t, c = 0.05 * rng.normal(size=(4, 3)), 0.05 * rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    y = np.array([0, 4, 2, 2])
    e = c[y] / np.linalg.norm(c[y], axis=1, keepdims=True)
    want = np.mean(1 - (s * e).sum(1) / np.maximum(np.linalg.norm(s, axis=1), np.linalg.norm(t, axis=1)))
    got = nd_loss(*(torch.tensor(a) for a in (s, t, c)), torch.tensor(y))
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_nd_centres_have_the_width_of_a_flat_teacher_embedding():
    from kdlab.distill import create_distiller
    from kdlab.models import create
    torch.manual_seed(0)
    d = create_distiller("nd", create("mlp", 10, IN, width=32), create("convnet", 10, IN, width=8), IN)
    (shape,) = d.teacher_shapes.values()
    assert len(shape) == 1 and tuple(d.centers.shape) == (10, shape[0])


def test_nd_terms_are_weighted_kd_to_the_teacher_and_nd_of_the_student_embedding():
    from kdlab.distill.functional import pool_flatten
    d = make("nd", kd_weight=1.7, nd_weight=0.6, temperature=3.0)
    d.train()
    x, y = torch.randn(6, *IN), torch.tensor([0, 1, 1, 2, 0, 3])
    t_out = d.teacher_forward(x)
    logits, feats = d.student_forward(x)
    terms = d.losses(logits, feats, t_out, y)
    with torch.no_grad():
        (ls,), (lt,) = d.student_layers, d.teacher_layers
        s = pool_flatten(d.adapters[0](feats[ls])).numpy().astype(np.float64)
    t = pool_flatten(t_out.features[lt]).numpy().astype(np.float64)
    centres = np.stack([t[y.numpy() == c].mean(0) for c in y.numpy()])  # first batch: the class means
    e = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    nd = np.mean(1 - (s * e).sum(1) / np.maximum(np.linalg.norm(s, axis=1), np.linalg.norm(t, axis=1)))
    assert terms["nd"].item() == pytest.approx(0.6 * nd, rel=1e-4)
    want_kd = 1.7 * np_kd(t_out.logits.numpy(), logits.detach().numpy(), 3.0)
    assert terms["kd"].item() == pytest.approx(want_kd, rel=1e-4)


def _np_ofa(s, t, y, eps, temp):
    log_q = np_log_softmax(s / temp)
    onehot = np.eye(s.shape[1])[y]
    weight = (np_softmax(t / temp) + onehot) ** eps - onehot
    return -np.mean(np.sum(weight * log_q, axis=1))


def test_ofa_terms_against_the_target_enhanced_formula_on_logits_and_branches():
    d = make("ofa", kd_weight=1.7, branch_weight=0.6, eps=2.0, temperature=2.0)
    d.train()
    x, y = torch.randn(5, *IN), torch.tensor([0, 1, 2, 3, 4])
    t_out = d.teacher_forward(x)
    logits, feats = d.student_forward(x)
    terms = d.losses(logits, feats, t_out, y)
    t = t_out.logits.numpy()
    assert terms["ofa"].item() == pytest.approx(1.7 * _np_ofa(logits.detach().numpy(), t, y.numpy(), 2.0, 2.0),
                                                rel=1e-4)
    with torch.no_grad():
        heads = [h(feats[p]).numpy() for p, h in zip(d.student_layers, d.branches, strict=True)]
    want = 0.6 * sum(_np_ofa(h, t, y.numpy(), 2.0, 2.0) for h in heads)
    assert terms["ofa_branches"].item() == pytest.approx(want, rel=1e-4)


def test_ofa_branch_heads():
    torch.manual_seed(0)
    conv = ofa.branch_head((4, 5, 6), 3)
    x = torch.randn(2, 4, 5, 6)
    assert conv[0](x).shape == x.shape and conv[0].bias is None  # 3x3 conv keeping the size, BN follows
    tokens = ofa.branch_head((7, 8), 3)
    x = torch.randn(2, 7, 8)
    want = tokens[-1](torch.nn.functional.layer_norm(x, (8,)).mean(1))  # LayerNorm per token, then mean
    torch.testing.assert_close(tokens(x), want)


def test_rkd_distance_of_three_samples_and_terms_summed_over_layer_pairs():
    e_s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    e_t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # distances / their mean: student (1, 2, sqrt 5) / 1.7454, teacher (1, 1, sqrt 2) / 1.1381
    ds, dt = np.array([1, 2, np.sqrt(5)]), np.array([1, 1, np.sqrt(2)])
    r = np.abs(ds / ds.mean() - dt / dt.mean())
    want = 2 * np.sum(np.where(r < 1, 0.5 * r**2, r - 0.5)) / 9
    assert rkd.rkd_distance_loss(e_s, e_t).item() == pytest.approx(want, rel=1e-5)
    layers = ["features.1", "features.2"]
    d = make("rkd", teacher_layers=layers, student_layers=layers, distance_weight=1.0, angle_weight=1.0)
    d.train()
    x, y = torch.randn(5, *IN), torch.arange(5)
    t_out = d.teacher_forward(x)
    logits, feats = d.student_forward(x)
    terms = d.losses(logits, feats, t_out, y)
    from kdlab.distill.functional import pool_flatten
    pairs = [(pool_flatten(feats[p]), pool_flatten(t_out.features[p])) for p in layers]
    assert terms["rkd_distance"].item() == pytest.approx(sum(rkd.rkd_distance_loss(s, t).item()
                                                             for s, t in pairs), rel=1e-5)
    assert terms["rkd_angle"].item() == pytest.approx(sum(rkd.rkd_angle_loss(s, t).item() for s, t in pairs),
                                                      rel=1e-5)


def test_taid_next_t_follows_the_momentum_schedule():
    from kdlab.distill.methods.taid import taid_next_t
    t, m = taid_next_t(0.5, 0.3, 1.0, 2.0, 0.1, 0.4, 1.0, 0.2, 0.9)
    m_want = 0.9 * 0.3 + 0.1 * (2.0 - 1.0) / 2.0  # EMA of the relative loss drop
    assert m == pytest.approx(m_want, rel=1e-12)
    assert t == pytest.approx(0.5 + 0.2 / (1 + np.exp(-m_want)) * 0.5, rel=1e-12)
    # the linear floor t_start + (t_end - t_start) * progress wins over a small adaptive step
    assert taid_next_t(0.5, 0.0, 1.0, 1.0, 0.5, 0.4, 1.0, 1e-3, 0.9)[0] == pytest.approx(0.7)
    assert taid_next_t(0.5, 0.0, 1.0, 1.0, 3.0, 0.4, 0.9, 1e-3, 0.9)[0] == pytest.approx(0.9)  # capped at t_end
    assert taid_next_t(0.95, 5.0, 1.0, 2.0, 0.0, 0.4, 0.97, 0.5, 0.5)[0] == pytest.approx(0.97)
    assert taid_next_t(0.5, 0.2, 0.0, 0.0, 0.0, 0.4, 1.0, 0.1, 0.9)[1] == pytest.approx(0.18)  # no loss yet: rel 0


def test_taid_accepts_a_constant_interpolation():
    d = make("taid", t_start=0.6, t_end=0.6)
    assert float(d.t) == pytest.approx(0.6)


MINE = sorted(m for m in METHODS.names()
              if m not in ("unlabelled", "fixmatch", "distill_nearest", "distill_weighted"))


@pytest.mark.parametrize("method", MINE)
def test_the_distiller_keeps_the_teacher_and_student_it_was_given(method):
    from kdlab.distill import create_distiller

    from .helpers import pair
    teacher, student = pair()
    d = create_distiller(method, teacher, student, IN)
    assert d.student is student and d.teacher is teacher


def test_tf_kd_virtual_teacher_for_two_and_one_classes():
    p = tf_kd.virtual_teacher(torch.tensor([0, 1, 1]), 2, 0.8)
    torch.testing.assert_close(p, torch.tensor([[0.8, 0.2], [0.2, 0.8], [0.2, 0.8]]))
    p = tf_kd.virtual_teacher(torch.tensor([0, 1]), 4, 0.7, 2.0)
    q = np.array([0.7, 0.1, 0.1, 0.1]) ** 0.5
    np.testing.assert_allclose(p[0].numpy(), q / q.sum(), rtol=1e-6)
    torch.testing.assert_close(tf_kd.virtual_teacher(torch.tensor([0, 0, 0]), 1), torch.ones(3, 1))


def test_nd_term_with_fixed_centres_along_the_student_embedding_is_zero():
    """Centres along each student embedding, student norm above the teacher's: ND = 0, and 2 with the centres
    reversed, so the weight must multiply it."""
    from kdlab.distill.functional import pool_flatten
    d = make("nd", nd_weight=0.6)
    d.train()
    with torch.no_grad():
        for p in d.adapters[0].parameters():
            p.mul_(100.0)
    x, y = torch.randn(5, *IN), torch.arange(5)
    t_out = d.teacher_forward(x)
    logits, feats = d.student_forward(x)
    (ls,) = d.student_layers
    with torch.no_grad():
        s = pool_flatten(d.adapters[0](feats[ls]))
    centres = torch.zeros_like(d.centers)
    centres[:5] = s
    d.set_class_centers(centres)
    (lt,) = d.teacher_layers
    assert (s.norm(dim=1) > pool_flatten(t_out.features[lt]).norm(dim=1)).all()
    assert abs(d.losses(logits, feats, t_out, y)["nd"].item()) < 1e-5
    d.set_class_centers(-centres)
    assert d.losses(logits, feats, t_out, y)["nd"].item() == pytest.approx(0.6 * 2.0, rel=1e-5)


def test_born_again_warns_with_the_teacher_shape_first():
    from kdlab.distill import create_distiller
    from kdlab.distill.methods.born_again import architecture_mismatch

    from .helpers import pair
    teacher, student = pair()
    with pytest.warns(UserWarning) as rec:
        create_distiller("born_again", teacher, student, IN)
    assert any(architecture_mismatch(teacher, student) in str(r.message) for r in rec)


def test_taid_next_t_survives_a_jump_from_a_near_zero_loss():
    """A loss rising from ~0 makes the relative drop huge and negative: the sigmoid must saturate at 0, not
    overflow (``math.exp`` raised OverflowError here before)."""
    from kdlab.distill.methods.taid import taid_next_t
    t, m = taid_next_t(0.5, 0.0, 1e-3, 1e-9, 0.0, 0.4, 1.0, 0.1, 0.9)
    assert m == pytest.approx(0.1 * (1e-9 - 1e-3) / (1e-9 + 1e-15)) and t == pytest.approx(0.5)
    t, m = taid_next_t(0.5, 0.0, 1.0, 0.0, 0.0, 0.4, 1.0, 0.1, 0.9)  # from exactly 0
    assert m < -1e13 and t == pytest.approx(0.5)
    t, _ = taid_next_t(0.5, 0.0, 0.0, 1.0, 0.0, 0.4, 1.0, 0.1, 0.0)  # the loss fell to 0: rel 1
    assert t == pytest.approx(0.5 + 0.1 / (1 + np.exp(-1.0)) * 0.5)


def test_nd_ema_centres_of_classes_absent_from_a_batch_stay_put():
    d = make("nd", center_momentum=0.5)
    d.train()
    first = torch.randn(3, 4)
    d.centers = torch.zeros(10, 4)
    d.counts = torch.zeros(10)
    d.update_centers(first, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(d.centers[:3], first)
    second = torch.randn(2, 4)
    d.update_centers(second, torch.tensor([0, 0]))
    torch.testing.assert_close(d.centers[0], 0.5 * first[0] + 0.5 * second.mean(0))
    torch.testing.assert_close(d.centers[1:3], first[1:])  # classes 1 and 2 were not in the batch
