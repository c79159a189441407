"""KD3 (web-data distillation): the selection rule, its weights, the weighted KD and feature-alignment terms,
the web pool, bad inputs, and one small end-to-end run on the tiny zoo."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdlab.data import load
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.shift.web_kd import (
    check_pool,
    kd3_loss,
    make_web_pool,
    select_instances,
    selection_precision,
    study_kd3,
    train_web,
)

torch.set_num_threads(1)


def _logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs).log()


# sample 0: both confident in class 0 (agree); 1: teacher confident 1, student says 2 (disagree, though their
# mean confidence in class 1, 0.68, passes the threshold);
# 2: they agree on class 2 but both are unsure; 3: they agree on class 2, less confident than sample 0.
TEACHER = _logits([[0.94, 0.02, 0.02, 0.02], [0.02, 0.94, 0.02, 0.02], [0.25, 0.24, 0.27, 0.24],
                   [0.1, 0.1, 0.7, 0.1]])
STUDENT = _logits([[0.85, 0.05, 0.05, 0.05], [0.05, 0.42, 0.48, 0.05], [0.24, 0.24, 0.28, 0.24],
                   [0.2, 0.1, 0.6, 0.1]])


def test_selection_keeps_agreeing_confident_samples_only() -> None:
    sel, w = select_instances(TEACHER, STUDENT, threshold=0.5)
    assert sel.tolist() == [True, False, False, True]
    assert w[1] == 0 and w[2] == 0
    conf = torch.tensor([0.5 * (0.94 + 0.85), 0.5 * (0.7 + 0.6)])
    torch.testing.assert_close(w[[0, 3]], conf / conf.sum())
    assert w[0] > w[3]


def test_selection_weights_sum_to_one_and_scale_with_batch() -> None:
    _, w = select_instances(TEACHER, STUDENT)
    assert float(w.sum()) == pytest.approx(1.0)
    _, w2 = select_instances(TEACHER.repeat(2, 1), STUDENT.repeat(2, 1))
    assert float(w2.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(w2[:4], w / 2)
    _, none = select_instances(TEACHER, STUDENT, threshold=0.99)
    assert float(none.abs().sum()) == 0.0


def test_selection_keeps_a_confidence_at_the_threshold_and_its_weights_carry_no_gradient() -> None:
    even = torch.zeros(1, 2)  # softmax [0.5, 0.5] exactly: confidence 0.5 in class 0
    assert select_instances(even, even, threshold=0.5)[0].tolist() == [True]
    low = _logits([[0.3, 0.25, 0.25, 0.2], [0.1, 0.1, 0.1, 0.7]])  # one sample kept at confidence 0.3
    sel, w = select_instances(low, _logits([[0.3, 0.25, 0.25, 0.2], [0.7, 0.1, 0.1, 0.1]]), threshold=0.2)
    assert sel.tolist() == [True, False] and w.tolist() == pytest.approx([1.0, 0.0])  # normalised whatever the sum
    t, s = TEACHER.clone().requires_grad_(True), STUDENT.clone().requires_grad_(True)
    sel, w = select_instances(t, s)
    assert not w.requires_grad  # the weights are data, not a path for the KD gradient into either model


def test_warmup_selection_uses_teacher_alone() -> None:
    sel, w = select_instances(TEACHER, STUDENT, threshold=0.5, student_weight=0.0)
    assert sel.tolist() == [True, True, False, True]  # sample 1 no longer needs the student's agreement
    torch.testing.assert_close(w[[0, 1, 3]], torch.tensor([0.94, 0.94, 0.7]) / 2.58)


def test_kd3_loss_is_weighted_and_alignment_pulls_towards_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    f_t, f_a = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g, requires_grad=True)
    w = torch.tensor([0.5, 0.0, 0.25, 0.25])
    terms = kd3_loss(t, s, f_t, f_a, w, temperature=2.0, beta=3.0)
    p_t, log_p_s = torch.softmax(t / 2, 1), torch.log_softmax(s / 2, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1) * 4
    torch.testing.assert_close(terms["kd"], (w * kl).sum())
    torch.testing.assert_close(terms["align"], 3.0 * (w * (f_a - f_t).pow(2).mean(1)).sum())
    # a zero-weight sample does not count
    f_b = f_a.detach().clone()
    f_b[1] += 100.0
    torch.testing.assert_close(kd3_loss(t, s, f_t, f_b, w)["align"], kd3_loss(t, s, f_t, f_a.detach(), w)["align"])
    # descending the alignment term moves the adapted features towards the teacher's
    before = float(((f_a.detach() - f_t) * w[:, None]).pow(2).sum())
    terms["align"].backward()
    with torch.no_grad():
        stepped = f_a - 0.1 * f_a.grad
    assert float(((stepped - f_t) * w[:, None]).pow(2).sum()) < before
    assert float(terms["align"].detach()) >= 0
    # the defaults are T = 4 and beta = 1; the teacher's features are a target, never trained through
    f_tg = f_t.clone().requires_grad_(True)
    default = kd3_loss(t, s, f_tg, f_a, w)
    explicit = kd3_loss(t, s, f_t, f_a, w, temperature=4.0, beta=1.0)
    torch.testing.assert_close(default["kd"], explicit["kd"])
    torch.testing.assert_close(default["align"], explicit["align"])
    default["align"].backward()
    assert f_tg.grad is None


def test_web_pool_flips_the_asked_share_to_other_classes() -> None:
    data = load("mnist5k", split="val")
    pool = make_web_pool(data, noise_rate=0.35, seed=1)
    again = make_web_pool(data, noise_rate=0.35, seed=1)
    assert torch.equal(pool.data.x, again.data.x) and torch.equal(pool.data.y, again.data.y)
    assert torch.equal(pool.clean_y, data.y)
    share = 1 - float(pool.label_clean.float().mean())
    assert 0.29 < share < 0.41
    assert not torch.equal(pool.data.x, data.x)  # the images are shifted
    with pytest.raises(ConfigError, match="noise_rate"):
        make_web_pool(data, noise_rate=1.0)


def test_bad_pools_are_refused() -> None:
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    empty = ArrayDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), classes=[str(i) for i in
                                                                                              range(10)])
    with pytest.raises(ConfigError, match="web_pool"):
        check_pool(teacher, empty)
    with pytest.raises(ConfigError, match="web_pool"):
        make_web_pool(empty)
    ten = ArrayDataset(torch.rand(4, 1, 28, 28), torch.arange(4), classes=[str(i) for i in range(10)])
    with pytest.raises(ConfigError, match="teacher: gives 5 class logits but web_pool has 10"):
        check_pool(teacher, ten)
    with pytest.raises(ConfigError, match="method"):
        train_web("kd4", teacher, ten)


def test_end_to_end_on_tiny_zoo(tiny_zoo) -> None:
    teacher = tiny_zoo.load("mnist")
    pool = make_web_pool(load("mnist5k", split="val").subset(torch.arange(200)), noise_rate=0.3)
    student, adapter = train_web("kd3", teacher, pool.data, steps=4, batch_size=32)
    assert adapter is not None and not student.training
    prec = selection_precision(teacher, student, pool)
    assert all(0.0 <= v <= 1.0 for v in prec.values())
    result = study_kd3(tiny_zoo, seed=0, scale=0.01)
    json.dumps(result)
    assert result["study"] == "kd3" and set(result["summary"]) >= {"kd3_minus_kd"}
    methods = {r["method"] for r in result["table"]}
    assert methods == {"teacher", "kd", "kd_ce", "kd3"}
    assert set(result["table"][0]) == {"method", "test set", "accuracy"}
    acc = {(r["method"], r["test set"]): r["accuracy"] for r in result["table"]}
    assert result["summary"]["kd3_minus_kd"] == pytest.approx(acc["kd3", "clean target"] - acc["kd", "clean target"])
    assert result["summary"]["kd3_minus_kd_ce"] == pytest.approx(acc["kd3", "clean target"] -
                                                                acc["kd_ce", "clean target"])
    from kdlab.transfer.teachers import accuracy

    assert acc["teacher", "clean target"] == pytest.approx(accuracy(teacher, load("mnist5k", split="test")))
    assert result["selection"]["label_clean_base"] == pytest.approx(0.65, abs=0.03)  # the study flips 35%
