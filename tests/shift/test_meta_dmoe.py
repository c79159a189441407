"""Meta-DMoE: the uniform mixture's maths, the aggregator's masking, the inner step's direction, test-time
adaptation on the given batch, second-order meta-gradients, leave-one-domain-out without leakage, refusals."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.base import ArrayDataset
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.shift.meta_dmoe import (
    METHODS,
    Aggregator,
    DomainData,
    MetaConfig,
    MetaDMoE,
    StudySizes,
    check_domains,
    domain_data,
    expert_logits,
    leave_one_out,
    study_meta_dmoe,
    uniform_mixture,
)

IN = (1, 1, 2)  # 2-D points as (N, 1, 1, 2) "images"


def mlp(out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, out))


def blobs(shift: float, n: int = 96, seed: int = 0) -> ArrayDataset:
    """Three 2-D Gaussian blobs, moved by ``shift`` (one domain)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = centres[y] + 0.5 * torch.randn(n, 2, generator=g) + shift
    return ArrayDataset(x.reshape(n, *IN), y, f"blobs{shift}")


def make(first_order: bool = False, inner_lr: float = 0.1) -> MetaDMoE:
    experts = [mlp(seed=10 + i) for i in range(3)]
    return MetaDMoE(experts, mlp(), ["a", "b", "c"], IN,
                    MetaConfig(batch_size=8, inner_lr=inner_lr, first_order=first_order), width=8)


def with_trained_head(m: MetaDMoE) -> MetaDMoE:
    """Give the aggregator a non-zero read-out so its transformer path shapes the output."""
    torch.manual_seed(1)
    nn.init.normal_(m.aggregator.out.weight, std=0.5)
    return m


# -- the mixture and the aggregator ---------------------------------------------------------------
def test_uniform_mixture_averages_probabilities_not_logits():
    logits = torch.tensor([[[4.0, 0.0, 0.0]], [[0.0, 1.0, 0.9]]])  # (K=2, N=1, C=3)
    want = (F.softmax(logits[0], 1) + F.softmax(logits[1], 1)) / 2
    got = uniform_mixture(logits)
    torch.testing.assert_close(got, want)
    assert int(got.argmax()) == 0 and int(logits.mean(0).argmax()) == 0
    logits2 = torch.tensor([[[10.0, 0.0]], [[0.0, 2.0]], [[0.0, 2.0]]])  # mean of logits picks class 0 ...
    assert int(logits2.mean(0).argmax()) == 0 and int(uniform_mixture(logits2).argmax()) == 1  # ... probs class 1
    torch.testing.assert_close(uniform_mixture(logits, torch.tensor([True, False])), F.softmax(logits[1], 1))


def test_aggregator_starts_as_the_uniform_mixture_and_ignores_masked_experts():
    torch.manual_seed(0)
    agg = Aggregator(3, 4, width=8)
    logits = torch.randn(3, 5, 4)
    mask = torch.tensor([False, True, False])
    torch.testing.assert_close(agg(logits, mask).exp(), uniform_mixture(logits, mask))
    nn.init.normal_(agg.out.weight, std=0.5)
    other = logits.clone()
    other[1] = 10 * torch.randn(5, 4)
    torch.testing.assert_close(agg(other, mask), agg(logits, mask))  # the masked expert has no say
    assert not torch.allclose(agg(other), agg(logits))                 # unmasked, it has
    with pytest.raises(ConfigError, match="mask"):
        agg(logits, torch.ones(3, dtype=torch.bool))


# -- meta-training ------------------------------------------------------------------------------
def test_meta_loss_masks_the_sampled_domains_expert():
    m = with_trained_head(make())
    xs, xq = blobs(0.0, 8, 1).x, blobs(0.0, 8, 2)
    ls = expert_logits(m.experts, xs)
    assert m.mask_for("b").tolist() == [False, True, False]
    base = m.meta_loss("b", xs, ls, xq.x, xq.y)
    own = ls.clone()
    own[1] = 5 * torch.randn_like(own[1])
    other = ls.clone()
    other[0] = 5 * torch.randn_like(other[0])
    torch.testing.assert_close(m.meta_loss("b", xs, own, xq.x, xq.y), base)
    assert abs((m.meta_loss("b", xs, other, xq.x, xq.y) - base).item()) > 1e-6


def test_training_never_reads_a_domains_own_expert():
    domains = {"a": blobs(0.0, 48, 1), "b": blobs(1.0, 48, 2), "c": blobs(-1.0, 48, 3)}
    ref = make()
    clean = {n: expert_logits(ref.experts, ds.x) for n, ds in domains.items()}
    dirty = {n: lg.clone() for n, lg in clean.items()}
    for i, n in enumerate(domains):
        dirty[n][i] = 7 * torch.randn_like(dirty[n][i])
    states = []
    for lg in (clean, dirty):
        m = make()
        m.warm_start(domains, 3, seed=0, logits=lg)
        m.meta_train(domains, 3, seed=1, logits=lg)
        states.append([p.detach().clone() for p in [*m.student.parameters(), *m.aggregator.parameters()]])
    for p, q in zip(*states, strict=True):
        torch.testing.assert_close(p, q)


def test_inner_step_descends_the_distillation_loss():
    m = with_trained_head(make(inner_lr=0.05))
    x = blobs(0.5, 16, 4).x
    target = m.aggregator(expert_logits(m.experts, x)).detach()
    p0 = dict(m.student.named_parameters())
    p1 = m.inner_loop(x, target, create_graph=False)
    grads = torch.autograd.grad(m.distill_loss(p0, x, target), list(p0.values()))
    for (k, p), g in zip(p0.items(), grads, strict=True):
        torch.testing.assert_close(p1[k], p - 0.05 * g)
    assert m.distill_loss(p1, x, target).item() < m.distill_loss(p0, x, target).item() - 1e-5
    torch.testing.assert_close(m.distill_loss(p0, x, target),
                               kl_div(m.student(x), target))  # KL(aggregated || student), T = 1


def test_second_order_meta_gradient_reaches_the_aggregator():
    xs, xq = blobs(0.0, 8, 1).x, blobs(0.0, 8, 2)
    grads = {}
    for first_order in (False, True):
        m = make(first_order=first_order)
        ls = expert_logits(m.experts, xs)
        m.meta_loss("a", xs, ls, xq.x, xq.y).backward()
        g = m.aggregator.out.weight.grad
        grads[first_order] = 0.0 if g is None else float(g.abs().sum())
    assert grads[False] > 1e-6 and grads[True] == 0.0


# -- test time ------------------------------------------------------------------------------------
def test_adapt_uses_the_unlabelled_batch():
    m = with_trained_head(make())
    x1, x2 = blobs(2.0, 16, 5).x, blobs(-2.0, 16, 6).x
    before = [p.detach().clone() for p in m.student.parameters()]
    a1 = m.adapt(x1)
    want = m.inner_loop(x1, m.aggregator(expert_logits(m.experts, x1)).detach(), create_graph=False)
    for k, p in a1.named_parameters():
        torch.testing.assert_close(p, want[k].detach())
    a2 = m.adapt(x2)
    assert any(not torch.equal(p, q) for p, q in zip(a1.parameters(), a2.parameters(), strict=True))
    assert all(torch.equal(p, q) for p, q in zip(before, m.student.parameters(), strict=True))  # student untouched
    torch.testing.assert_close(m.predict(x1), a1(x1))
    assert not torch.allclose(m.predict(x1), m.predict(x1, adapt=False))


def test_refusals():
    m = make()
    with pytest.raises(ConfigError, match="x_unlabelled"):
        m.adapt(torch.zeros(0, *IN))
    with pytest.raises(ConfigError, match="x_unlabelled"):
        m.adapt(torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="label space"):
        MetaDMoE([mlp(3), mlp(2)], mlp(3), ["ten", "parity"], IN)
    with pytest.raises(ConfigError, match="inner_lr"):
        MetaConfig(inner_lr=0.0)
    with pytest.raises(ConfigError, match="domains"):
        m.meta_train({"a": blobs(0.0, 8)}, 1)  # fewer samples than a support + a query batch


# -- leave-one-domain-out on the tiny zoo ---------------------------------------------------------
DOMS = ["mnist", "mnist_invert", "mnist_rot90"]


def test_incompatible_experts_are_refused_with_the_compatible_list(tiny_zoo):
    with pytest.raises(ConfigError, match="label space") as e:
        check_domains(tiny_zoo, DOMS + ["mnist_0to4"])
    assert "mnist_0to4" in str(e.value) and "Compatible sources: ['mnist', 'mnist_invert', 'mnist_rot90']" in str(
        e.value)
    with pytest.raises(ConfigError, match=">= 3 domains"):
        check_domains(tiny_zoo, DOMS[:2])


def test_held_out_domain_leaks_nothing(tiny_zoo):
    torch.set_num_threads(1)
    experts = [tiny_zoo.load(d) for d in DOMS]
    data = domain_data(tiny_zoo, DOMS, experts, 128, 50, 60, seed=0)
    sizes = StudySizes(warmup=4, meta_steps=2, adapt_batch=32, config=MetaConfig(batch_size=16))
    rows, ex = leave_one_out("mnist", data, experts, DOMS, sizes)
    assert [r["method"] for r in rows] == list(METHODS)
    assert {r["expert"] for r in ex} == {"mnist_invert", "mnist_rot90"}
    assert all(r["detail"] != "mnist" for r in rows)
    # corrupt everything the held-out domain must not give: its expert's outputs everywhere, its labels, its val
    bad = copy.deepcopy(data)
    g = torch.Generator().manual_seed(9)
    for d in bad.values():
        for lg in d.logits.values():
            lg[0] = 9 * torch.randn(lg[0].shape, generator=g)
    h = bad["mnist"]
    bad["mnist"] = DomainData(ArrayDataset(h.pool.x, torch.randint(0, 10, (len(h.pool),), generator=g)),
                              ArrayDataset(torch.rand(h.val.x.shape, generator=g), h.val.y.flip(0)), h.test, h.logits)
    rows2, ex2 = leave_one_out("mnist", bad, [nn.Identity(), *experts[1:]], DOMS, sizes)
    assert rows2 == rows and ex2 == ex
    # an expert's val score: its accuracy on the *other* source domains' val data (its own would flatter it)
    inv = next(r for r in ex if r["expert"] == "mnist_invert")
    val = data["mnist_rot90"].val
    assert inv["source_val_accuracy"] == pytest.approx(float((data["mnist_rot90"].logits["val"][1].argmax(1) == val.y)
                                                             .double().mean()))
    # the val-picked expert is chosen by that score, not by test
    best = max(ex, key=lambda r: r["source_val_accuracy"])
    assert rows[0]["detail"] == best["expert"] and rows[0]["accuracy"] == best["test_accuracy"]
    assert rows[1]["accuracy"] == max(r["test_accuracy"] for r in ex)
    y = data["mnist"].test.y
    mix = uniform_mixture(data["mnist"].logits["test"][[1, 2]]).argmax(1)
    assert rows[2]["accuracy"] == pytest.approx(float((mix == y).double().mean()))


def test_study_runs_end_to_end(tiny_zoo):
    torch.set_num_threads(1)
    calls = []
    out = study_meta_dmoe(tiny_zoo, seed=0, scale=0.1, progress=lambda i, n, m: calls.append((i, n)),
                          domains=DOMS, held_out=["mnist_invert"])
    json.dumps(out)
    assert out["study"] == "meta_dmoe" and out["held_out"] == ["mnist_invert"]
    assert len(out["table"]) == len(METHODS) and calls[-1] == (4, 4)
    s = out["summary"]
    assert s["gain_vs_best_expert"] == pytest.approx(s["Meta-DMoE (TTA)"] - s["best expert (source val)"])
    assert s["gain_vs_uniform"] == pytest.approx(s["Meta-DMoE (TTA)"] - s["uniform mixture"])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in out["table"])
    with pytest.raises(ConfigError, match="held_out"):
        study_meta_dmoe(tiny_zoo, domains=DOMS, held_out=["mnist_blur"])
    assert np.isfinite(out["time_s"])
