"""Source-free adaptation (GLC, LPLD): the prototype rule, unknowns, kNN consensus, LPLD's partition and terms,
the EMA direction, open-set metrics against hand values and sklearn, adaptation on a rotated blob toy, and an
end-to-end study on the tiny zoo."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from kdlab.errors import ConfigError
from kdlab.shift.source_free import (
    _pool,
    adapt_glc,
    adapt_lpld,
    auroc,
    ema_update,
    glc_pseudo_labels,
    glc_targets,
    knn_consensus,
    lpld_loss,
    lpld_partition,
    normalised_entropy,
    open_set_metrics,
    study_source_free,
    target_norm_stats,
)

torch.set_num_threads(1)


class MLP(nn.Module):
    """A tiny vector classifier declaring its embedding and logits taps, as zoo models do."""

    def __init__(self, classes: int = 3, hidden: int = 16, norm: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(2, hidden), *([nn.BatchNorm1d(hidden)] if norm else []),
                                  nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)
        self.kdlab_taps = {"embedding": "body", "logits": "head"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def blobs(n: int, angle: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs on a circle of radius 3, the whole set rotated by ``angle`` radians."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    theta = 2 * math.pi * y / 3 + angle
    x = 3 * torch.stack([theta.cos(), theta.sin()], 1) + 0.6 * torch.randn(len(y), 2, generator=g)
    return x, y


@pytest.fixture(scope="module")
def source_mlp() -> MLP:
    torch.manual_seed(0)
    model = MLP()
    x, y = blobs(100, 0.0, 0)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# -- GLC global clustering -------------------------------------------------------------------------------------------
def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four tight feature clusters along e0..e3; classes 0-2 are known (p(c) = 0.8), cluster 3 is new (uniform)."""
    g = np.random.default_rng(seed)
    truth = np.repeat(np.arange(4), 20)
    feats = np.eye(8)[truth] + 0.05 * g.normal(size=(80, 8))
    probs = np.full((80, 3), 0.1)
    probs[truth < 3, truth[truth < 3]] = 0.8
    probs[truth == 3] = 1 / 3
    return feats, probs, truth


@pytest.mark.parametrize("n_neg", [1, 3])
def test_glc_labels_known_clusters_and_calls_the_new_one_unknown(n_neg):
    feats, probs, truth = _clusters()
    labels, score = glc_pseudo_labels(feats, probs, pos_share=0.25, n_neg=n_neg)
    assert (labels[truth < 3] == truth[truth < 3]).all()  # inverted rule: every class refuses its own cluster
    assert (labels[truth == 3] == -1).all()  # dropped unknowns: the new cluster would take some class
    assert (score[truth < 3] > 0).all() and (score[truth == 3] < 0).all()


def test_glc_prototypes_come_from_features_not_the_argmax():
    """The classifier is wrong about cluster 1 (it puts its mass on class 0 with p = 0.5 < the 0.8 of cluster 0):
    the top share of p(0) is still cluster 0, and cluster 1 is the top of p(1), so clustering fixes the labels."""
    feats, probs, truth = _clusters()
    probs[truth == 1] = [0.5, 0.4, 0.1]
    labels, _ = glc_pseudo_labels(feats, probs, pos_share=0.25, n_neg=3)
    assert (probs[truth == 1].argmax(1) == 0).all()
    assert (labels[truth == 1] == 1).all()


def test_glc_pseudo_labels_refuse_bad_shapes_and_shares():
    feats, probs, _ = _clusters()
    with pytest.raises(ConfigError, match="features/probs"):
        glc_pseudo_labels(feats[:10], probs)
    with pytest.raises(ConfigError, match="pos_share"):
        glc_pseudo_labels(feats, probs, pos_share=1.5)
    with pytest.raises(ConfigError, match="probs"):
        glc_pseudo_labels(feats, probs[:, :1])


# -- GLC local consensus ------------------------------------------------------------------------------------------
def test_knn_consensus_averages_the_nearest_other_samples():
    # pairs (0, 1), (2, 3), (4, 5) of near-identical features; each sample's probs differ from its partner's
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0], [-1.0, 0.0], [-1.0, 0.05]])
    probs = torch.eye(6)[:, :6]
    q = knn_consensus(bank, bank, probs, k=1, query_index=torch.arange(6))
    assert torch.equal(q, probs[[1, 0, 3, 2, 5, 4]])  # self-only neighbours would return probs itself
    q2 = knn_consensus(bank[:1], bank, probs, k=2, query_index=torch.tensor([0]))
    # the next nearest after sample 1: samples 2/3 at cosine ~0 vs 4/5 at -1; sample 3 is a bit closer
    torch.testing.assert_close(q2, (probs[1] + probs[3])[None] / 2)
    with pytest.raises(ConfigError, match="k"):
        knn_consensus(bank, bank, probs, k=6, query_index=torch.arange(6))
    # every other sample (k = N - 1) is allowed; queries outside the bank may use all N entries
    torch.testing.assert_close(knn_consensus(bank, bank, probs, k=5, query_index=torch.arange(6)),
                               (1 - torch.eye(6)) / 5)
    torch.testing.assert_close(knn_consensus(bank[:1], bank, probs, k=6), probs.mean(0, keepdim=True))
    with pytest.raises(ConfigError, match="k"):
        knn_consensus(bank[:1], bank, probs, k=7)


def test_glc_targets_are_one_hot_for_known_and_uniform_for_unknown():
    t = glc_targets(np.array([2, -1, 0]), 4)
    torch.testing.assert_close(t, torch.tensor([[0, 0, 1.0, 0], [0.25] * 4, [1.0, 0, 0, 0]]))


# -- LPLD -------------------------------------------------------------------------------------------------------------
def _teacher_logits() -> torch.Tensor:
    """Teacher confidences 0.95 (high), 0.7 (low) and 0.3 (below tau_low) over 4 classes."""
    probs = torch.tensor([[0.95, 0.02, 0.02, 0.01], [0.1, 0.7, 0.1, 0.1], [0.3, 0.25, 0.25, 0.2]])
    return probs.log()


def test_lpld_partition_sends_confident_to_hard_and_middling_to_soft():
    high, low = lpld_partition(F.softmax(_teacher_logits(), 1), tau_low=0.5, tau_high=0.9)
    assert high.tolist() == [True, False, False]
    assert low.tolist() == [False, True, False]
    with pytest.raises(ConfigError, match="tau_low/tau_high"):
        lpld_partition(F.softmax(_teacher_logits(), 1), tau_low=0.9, tau_high=0.5)
    # at the thresholds: a confidence of exactly tau_high is hard, exactly tau_low is soft
    exact = torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]])
    high, low = lpld_partition(exact, tau_low=0.5, tau_high=0.75)
    assert high.tolist() == [True, False, True] and low.tolist() == [False, True, False]
    for lo, hi in ((0.0, 1.0), (0.0, 0.5)):  # both ends of [0, 1] are valid thresholds
        lpld_partition(exact, tau_low=lo, tau_high=hi)
    for lo, hi in ((0.5, 0.5), (0.5, 1.5), (-0.1, 0.5)):
        with pytest.raises(ConfigError, match="tau_low/tau_high"):
            lpld_partition(exact, tau_low=lo, tau_high=hi)


def test_lpld_loss_terms_by_hand():
    t = _teacher_logits()
    s = torch.tensor([[0.5, 0.2, 0.1, 0.0], [0.0, 1.0, -1.0, 0.3], [1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    s_feat = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    t_feat = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    terms = lpld_loss(s, t, s_feat, t_feat, tau_low=0.5, tau_high=0.9)
    hard = F.cross_entropy(s[:1], torch.tensor([0]), reduction="sum") / 3
    p_t = F.softmax(t[1], 0)
    kl = (p_t * (p_t.log() - F.log_softmax(s[1], 0))).sum()
    torch.testing.assert_close(terms["hard"], hard)
    torch.testing.assert_close(terms["soft"], 0.6 * kl / 3)  # cosine 0.6 weights the low sample
    (terms["hard"]).backward()
    assert s.grad[1:].abs().sum() == 0  # low / dropped samples never get a hard label
    tg, fg = t.clone().requires_grad_(True), t_feat.clone().requires_grad_(True)
    again = lpld_loss(s.detach(), tg, s_feat, fg, tau_low=0.5, tau_high=0.9)
    assert not again["hard"].requires_grad and not again["soft"].requires_grad  # the teacher is a target only
    sf = s_feat.clone().requires_grad_(True)
    lpld_loss(s.detach().requires_grad_(True), t, sf, t_feat, 0.5, 0.9)["soft"].backward()
    assert sf.grad is None  # the feature-similarity weight scales the KL; it is not trained itself


def test_lpld_soft_weight_is_zero_for_opposed_features():
    t = _teacher_logits()
    s = torch.zeros(3, 4)
    terms = lpld_loss(s, t, -torch.ones(3, 2), torch.ones(3, 2))
    assert float(terms["soft"]) == 0.0


def test_ema_moves_the_teacher_towards_the_student():
    teacher, student = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.fill_(0.0)
        student.weight.fill_(1.0)
    student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, momentum=0.9)
    torch.testing.assert_close(teacher.weight, torch.full((2,), 0.1))
    torch.testing.assert_close(student.weight, torch.ones(2))
    assert int(teacher.num_batches_tracked) == 7


def test_target_norm_stats_are_the_pool_statistics():
    torch.manual_seed(0)
    model = MLP(norm=True).train()
    for _ in range(5):  # source statistics far from the pool's
        model(torch.randn(64, 2) * 10 - 5)
    model.eval()
    x = torch.randn(50, 2) * 3 + 1
    target_norm_stats(model, _pool(x))
    pre = model.body[1](x).detach()
    torch.testing.assert_close(model.body[2].running_mean, pre.mean(0))
    torch.testing.assert_close(model.body[2].running_var, pre.var(0))
    assert model.body[2].momentum == 0.1 and not model.training


# -- adaptation on a shifted toy --------------------------------------------------------------------------------------
def test_both_methods_improve_a_rotated_blob_target_and_leave_the_source_alone(source_mlp):
    x_t, y_t = blobs(100, 0.9, 1)
    x_e, y_e = blobs(100, 0.9, 2)
    before = _acc(source_mlp, x_e, y_e)
    state = {k: v.clone() for k, v in source_mlp.state_dict().items()}
    glc, curve_g = adapt_glc(source_mlp, x_t, epochs=6, batch_size=20, lr=0.05, seed=0, eval_data=(x_e, y_e))
    lpld, curve_l = adapt_lpld(source_mlp, x_t, epochs=6, batch_size=20, lr=0.05, noise=0.3, seed=0,
                               eval_data=(x_e, y_e))
    assert before < 0.8
    assert curve_g[0] == curve_l[0] == pytest.approx(before)
    assert len(curve_g) == len(curve_l) == 7
    assert _acc(glc, x_e, y_e) > before + 0.25 and curve_g[-1] == pytest.approx(_acc(glc, x_e, y_e))
    assert _acc(lpld, x_e, y_e) > before + 0.25 and curve_l[-1] == pytest.approx(_acc(lpld, x_e, y_e))
    assert all(torch.equal(v, source_mlp.state_dict()[k]) for k, v in state.items())
    assert torch.equal(glc.head.weight, source_mlp.head.weight)  # GLC adapts the extractor, not the classifier


def test_adaptation_is_deterministic(source_mlp):
    x_t, _ = blobs(30, 0.9, 1)
    a, _ = adapt_lpld(source_mlp, x_t, epochs=1, seed=3)
    b, _ = adapt_lpld(source_mlp, x_t, epochs=1, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# -- open-set metrics -------------------------------------------------------------------------------------------------
def test_open_set_metrics_by_hand():
    # 2 known classes; labels 2 and 3 are new. Confident rows are called known, uniform rows unknown.
    sure0, sure1, flat = [0.99, 0.01], [0.01, 0.99], [0.5, 0.5]
    probs = np.array([sure0, sure0, flat, sure1, sure0, flat, flat, sure1])
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    m = open_set_metrics(probs, labels)
    known = (2 / 3 + 1 / 2) / 2  # class 0: 2 of 3 (one called unknown), class 1: 1 of 2
    assert m["known_acc"] == pytest.approx(known)
    assert m["unknown_recall"] == pytest.approx(2 / 3)
    assert m["hscore"] == pytest.approx(2 * known * (2 / 3) / (known + 2 / 3))
    assert m["closed_acc"] == pytest.approx(4 / 5)  # the flat row's argmax is class 0: right; sample 4 is wrong
    assert m["auroc"] == pytest.approx(roc_auc_score(labels >= 2, normalised_entropy(probs)))


def test_open_set_edges_a_score_at_the_threshold_is_known_and_one_sample_of_a_kind_counts():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 2])
    m = open_set_metrics(probs, labels, threshold=0.5, scores=np.array([0.5, 0.2, 0.7]))
    assert m["known_acc"] == 1.0 and m["unknown_recall"] == 1.0  # 0.5 is not above 0.5: called known, rightly
    assert m["auroc"] == 1.0  # one unknown sample (n_pos = 1) still has an AUROC
    one = open_set_metrics(probs[:1], labels[:1])  # a single known sample: defined, no unknowns
    assert one["known_acc"] == 1.0 and math.isnan(one["unknown_recall"]) and math.isnan(one["auroc"])
    assert math.isnan(auroc(np.array([0.1, 0.9]), np.array([False, False])))  # no positive
    assert math.isnan(auroc(np.array([0.1, 0.9]), np.array([True, True])))  # no negative
    assert auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    # H-score below 1 in sum, and 0 when neither part is right
    low = open_set_metrics(np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.5, 0.5]]),
                           np.array([0, 1, 2, 2, 2]), threshold=0.9)
    assert low["known_acc"] == 0.5 and low["unknown_recall"] == pytest.approx(1 / 3)
    assert low["hscore"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    zero = open_set_metrics(np.array([[0.1, 0.9], [0.9, 0.1]]), np.array([0, 2]), threshold=0.99)
    assert zero["known_acc"] == 0.0 and zero["unknown_recall"] == 0.0 and zero["hscore"] == 0.0
    for bad_p, bad_y in ((probs, labels[:2]), (probs[:0], labels[:0]), (probs[0], labels[:1])):
        with pytest.raises(ConfigError, match="probs/labels"):
            open_set_metrics(bad_p, bad_y)


def test_auroc_matches_sklearn_with_ties():
    g = np.random.default_rng(0)
    s = g.integers(0, 5, 200).astype(float)
    pos = g.random(200) < 0.3
    assert auroc(s, pos) == pytest.approx(roc_auc_score(pos, s))
    assert auroc(-s, pos) == pytest.approx(1 - roc_auc_score(pos, s))
    assert math.isnan(auroc(s, np.zeros(200, bool)))


def test_normalised_entropy_bounds():
    np.testing.assert_allclose(normalised_entropy(np.array([[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3]])), [0.0, 1.0],
                               atol=1e-9)


# -- bad input --------------------------------------------------------------------------------------------------------
def test_bad_inputs_are_refused_with_the_field(source_mlp):
    x, y = blobs(5, 0.0, 0)
    with pytest.raises(ConfigError, match="unlabelled"):
        adapt_glc(source_mlp, torch.empty(0, 2))
    with pytest.raises(ConfigError, match="unlabelled"):
        adapt_lpld(source_mlp, torch.empty(0, 2))
    with pytest.raises(ConfigError, match="eval_data.*integers"):
        adapt_glc(source_mlp, x, eval_data=(x, y.float() + 0.5))
    with pytest.raises(ConfigError, match="model.*>= 2 classes"):
        adapt_lpld(MLP(classes=1), x)
    with pytest.raises(ConfigError, match="labels.*integers"):
        open_set_metrics(np.full((3, 2), 0.5), np.array([0.0, 1.5, 2.0]))
    with pytest.raises(ConfigError, match="probs"):
        open_set_metrics(np.ones((3, 1)), np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match="momentum"):
        adapt_lpld(source_mlp, x, momentum=1.0)


def test_target_labels_beyond_the_source_count_as_unknown(source_mlp):
    x, y = blobs(20, 0.0, 0)
    y = torch.where(y == 2, torch.tensor(5), y)  # a class the source never saw
    _, curve = adapt_glc(source_mlp, x, epochs=1, eval_data=(x, y))
    assert 0.0 <= curve[0] <= 1.0 and len(curve) == 2


# -- end to end ----------------------------------------------------------------------------------------------------
def test_study_on_the_tiny_zoo(tiny_zoo):
    calls = []
    out = study_source_free(tiny_zoo, seed=0, scale=0.06, progress=lambda d, n, m: calls.append((d, n)))
    json.dumps(out)
    assert out["study"] == "source_free" and calls[-1] == (8, 8)
    assert {r["method"] for r in out["table"]} == {"AdaBN only", "GLC", "LPLD"} and len(out["table"]) == 12
    assert out["curve_metric"]["digits open-set (0-4 known)"] == "H-score"
    for target, by_method in out["curves"].items():
        assert set(by_method) == {"GLC", "LPLD"}
        assert all(len(c) == out["sizes"][target]["epochs"] + 1 for c in by_method.values())
    open_row = next(r for r in out["table"] if r["target"].startswith("digits open") and r["method"] == "GLC")
    assert open_row["hscore"] == pytest.approx(open_row["after"])
    assert {"closed_gain_glc", "closed_gain_lpld", "open_hscore_glc", "open_hscore_lpld"} <= set(out["summary"])


def test_glc_centres_features_so_a_common_offset_changes_nothing():
    """ReLU features share a large mean: GLC's cosines are taken after centring (the default), so adding a common
    offset to every feature leaves the labels as they were; without centring every cosine is near 1."""
    feats, probs, truth = _clusters()
    plain, _ = glc_pseudo_labels(feats, probs, pos_share=0.25, n_neg=3)
    shifted, _ = glc_pseudo_labels(feats + 5.0, probs, pos_share=0.25, n_neg=3)
    np.testing.assert_array_equal(shifted, plain)
    raw, _ = glc_pseudo_labels(feats + 5.0, probs, pos_share=0.25, n_neg=3, centre=False)
    assert (raw != plain).any()


def test_glc_inputs_at_their_bounds():
    feats, probs, truth = _clusters()
    two = probs[:, :2] / probs[:, :2].sum(1, keepdims=True)
    assert glc_pseudo_labels(feats, two)[0].shape == (80,)  # two source classes are enough
    for rho in (0.0, 1.0):  # the prior's floor may be either end of [0, 1]
        assert glc_pseudo_labels(feats, probs, rho=rho)[0].shape == (80,)
    for rho in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="rho"):
            glc_pseudo_labels(feats, probs, rho=rho)
    with pytest.raises(ConfigError, match="same N > 0"):
        glc_pseudo_labels(feats[:0], probs[:0])
    one, _ = glc_pseudo_labels(feats[:1], probs[:1])  # a single sample is a valid (if tiny) pool
    assert one.shape == (1,)


def _glc_by_hand(f: np.ndarray, p: np.ndarray, top: int, rho: float, centres_of) -> tuple[np.ndarray, np.ndarray]:
    """GLC's global rule written out sample by sample: class c's positive prototype is the mean unit feature of the
    ``top`` samples of highest p(c), its prior rho + (1 - rho) * their mean p(c); c claims sample i when
    prior * cos(f_i, positive) - max over negative prototypes cos(f_i, negative) >= 0."""
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    f = np.array([unit(r) for r in f - f.mean(0)])
    n, classes = p.shape
    sims, margins = np.zeros((n, classes)), np.zeros((n, classes))
    for c in range(classes):
        order = sorted(range(n), key=lambda i: -p[i, c])
        pos, neg = order[:top], order[top:]
        prior = rho + (1 - rho) * sum(p[i, c] for i in pos) / len(pos)
        proto = unit(sum(f[i] for i in pos) / len(pos))
        negs = [unit(m) for m in centres_of(f[neg])]
        for i in range(n):
            sims[i, c] = f[i] @ proto
            margins[i, c] = prior * sims[i, c] - max(f[i] @ m for m in negs)
    best = sims.argmax(1)
    margin = margins[np.arange(n), best]
    return np.where(margin >= 0, best, -1), margin


@pytest.mark.parametrize("negatives", ["one mean", "every sample"])
def test_glc_pseudo_labels_follow_the_rule_written_out(negatives):
    g = np.random.default_rng(9)
    f = g.normal(size=(12, 5)) + 2.0
    p = g.dirichlet(np.ones(3), size=12)
    if negatives == "one mean":
        want = _glc_by_hand(f, p, 3, 0.6, lambda neg: [neg.mean(0)])
        got = glc_pseudo_labels(f, p, pos_share=0.25, n_neg=1, rho=0.6)
    else:  # as many k-means centres as negatives: each negative is its own prototype
        want = _glc_by_hand(f, p, 3, 0.6, lambda neg: list(neg))
        got = glc_pseudo_labels(f, p, pos_share=0.25, n_neg=9, rho=0.6)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-9)
    assert (want[0] == -1).any() and (want[0] >= 0).any()  # the case has both outcomes


def test_glc_small_pools_and_no_negatives():
    """A pool smaller than twice the classes still gives each class one positive (the rule written out); a pool of
    one sample has no negatives, so its nearest class claims it."""
    g = np.random.default_rng(3)
    f, p = g.normal(size=(6, 4)) + 1.0, g.dirichlet(np.ones(4), size=6)
    want = _glc_by_hand(f, p, 1, 0.75, lambda neg: [neg.mean(0)])  # int(6 / 4) = 1 positive per class
    got = glc_pseudo_labels(f, p, n_neg=1)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-9)
    labels, margin = glc_pseudo_labels(f[:1], p[:1])  # one sample: the positive of every class, no negatives
    assert labels[0] >= 0 and margin[0] == np.inf


def test_glc_two_negative_prototypes_are_the_two_clusters_of_the_negatives():
    """Three tight clusters, one per class: each class's negatives are the two other clusters, and its two
    negative prototypes (k-means, k = 2) are their means."""
    g = np.random.default_rng(5)
    truth = np.repeat(np.arange(3), 4)
    f = np.eye(3)[truth] * 3 + 0.01 * g.normal(size=(12, 3)) + np.array([0.5, 0.2, 0.1])
    p = np.full((12, 3), 0.2)
    p[np.arange(12), truth] = 0.6

    def two_means(neg: np.ndarray) -> list[np.ndarray]:
        u = np.linalg.svd(neg - neg.mean(0))[2][0]  # the clusters split along the first principal direction
        side = (neg - neg.mean(0)) @ u > 0
        return [neg[side].mean(0), neg[~side].mean(0)]

    want = _glc_by_hand(f, p, 4, 0.75, two_means)
    got = glc_pseudo_labels(f, p, pos_share=1 / 3, n_neg=2)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
