"""Complementary knowledge transfer (Fantastic Gains): the partition rule, the loss written out, one SGD step against
the written-out gradient, a constructed pair of 2-D experts (partitioned transfer gains and keeps what the student
knew, plain KD from the weaker teacher loses), pair gains, bad inputs, and one tiny-zoo study."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models.inference import predict
from kdlab.shift.complementary import (
    PairGains,
    complementary_knowledge,
    pair_gains,
    partition_mask,
    study_complementary,
    transfer,
    transfer_loss,
    transfer_targets,
)


# ------------------------------------------------------------------------------------------- fixtures
def blobs(n: int, seed: int, share_a: float = 0.3) -> tuple[ArrayDataset, torch.Tensor]:
    """Four 2-D Gaussian blobs as (N, 2, 1, 1) 'images': half A (x1 < 0, ``share_a`` of the points) labels the
    upper blob 1, half B (x1 > 0) the lower one, so a rule learnt on one half is wrong on the other."""
    g = torch.Generator().manual_seed(seed)
    na = int(n * share_a)
    side = torch.cat([torch.zeros(na), torch.ones(n - na)])
    up = (torch.rand(n, generator=g) < 0.5).float()
    centre = torch.stack([torch.where(side == 0, -2.0, 2.0), torch.where(up == 1, 2.0, -2.0)], 1)
    x = centre + 0.5 * torch.randn(n, 2, generator=g)
    y = torch.where(side == 0, up, 1 - up).long()
    return ArrayDataset(x[:, :, None, None], y, name="blobs", classes=["0", "1"]), side


def expert(data: ArrayDataset, side: torch.Tensor, knows: int, seed: int) -> nn.Module:
    """An MLP confidently right on half ``knows`` and weakly wrong (0.6 on the wrong class) on the other half."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))
    right = F.one_hot(data.y, 2).float()
    target = torch.where((side == knows)[:, None], right, 0.4 * right + 0.6 * (1 - right))
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(300):
        loss = -(target * F.log_softmax(m(data.x), 1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def pair():
    """Teacher knows half A (30% of the test set), student half B (70%): the teacher is the weaker model."""
    torch.set_num_threads(1)
    train, side = blobs(400, 0)
    test, test_side = blobs(400, 1)
    return train, test, test_side, expert(train, side, 0, 0), expert(train, side, 1, 1)


def acc(model: nn.Module, data: ArrayDataset, where: torch.Tensor | None = None) -> float:
    right = predict(model, data).argmax(1) == data.y
    return float(right[where].double().mean() if where is not None else right.double().mean())


class Table(nn.Module):
    """A classifier that answers sample i (input value i) with the fixed prediction ``preds[i]``."""

    def __init__(self, preds: list[int], k: int = 3):
        super().__init__()
        self.register_buffer("logits", 5.0 * F.one_hot(torch.tensor(preds), k).float())
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.flatten(1)[:, 0].long()] + 0 * self.dummy


# ------------------------------------------------------------------------------------------- the rule and the loss
def test_partition_mask_takes_the_teacher_only_where_it_is_more_confident():
    teacher = torch.tensor([[4.0, 0.0], [0.2, 0.0], [1.0, 0.0], [0.0, 3.0]])
    initial = torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 1.0], [2.0, 0.0]])  # row 2: a tie of confidences
    assert partition_mask(teacher, initial).tolist() == [True, False, False, True]
    mixed = transfer_targets(teacher, initial)
    assert torch.equal(mixed, torch.stack([teacher[0], initial[1], initial[2], teacher[3]]))
    assert torch.equal(transfer_targets(teacher, initial, partition=False), teacher)


def test_transfer_loss_is_t2_kl_from_the_partitioned_target_to_the_student():
    g = torch.Generator().manual_seed(0)
    s, t, i = (3 * torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = F.softmax(t, 1).amax(1) > F.softmax(i, 1).amax(1)
    assert 0 < int(mask.sum()) < 6  # both sources of targets occur
    tgt = torch.where(mask[:, None], t, i)
    for temp in (1.0, 2.0):
        p, log_p, log_q = F.softmax(tgt / temp, 1), F.log_softmax(tgt / temp, 1), F.log_softmax(s / temp, 1)
        want = temp**2 * (p * (log_p - log_q)).sum(1).mean()
        reverse = temp**2 * (log_q.exp() * (log_q - log_p)).sum(1).mean()
        got = transfer_loss(s, t, i, temperature=temp)
        assert torch.allclose(got, want, atol=1e-10)
        assert not torch.allclose(got, reverse, atol=1e-3)  # the test tells the two directions apart
        if temp == 1.0:
            assert torch.allclose(transfer_loss(s, t, i), want, atol=1e-10)  # the default temperature is 1
    plain = F.softmax(t / 2, 1) * (F.log_softmax(t / 2, 1) - F.log_softmax(s / 2, 1))
    assert torch.allclose(transfer_loss(s, t, i, 2.0, partition=False), 4 * plain.sum(1).mean(), atol=1e-10)


@pytest.mark.parametrize("partition", [True, False])
def test_one_step_is_sgd_on_the_loss_against_the_frozen_initial_student(pair, partition):
    train, _test, _side, teacher, student = pair
    pool = train.subset(np.arange(48))
    new = transfer(teacher, student, pool, steps=1, lr=0.5, batch_size=48, partition=partition, temperature=2.0)
    ref = copy.deepcopy(student)
    with torch.no_grad():
        t_logits, i_logits = teacher(pool.x), student(pool.x)
    transfer_loss(ref(pool.x), t_logits, i_logits, 2.0, partition).backward()
    for (name, p), q in zip(ref.named_parameters(), new.parameters(), strict=True):
        assert torch.allclose(q, p - 0.5 * p.grad, atol=1e-6), name


# ------------------------------------------------------------------------------------------- the constructed pair
def test_the_constructed_pair_holds_complementary_knowledge(pair):
    _train, test, side, teacher, student = pair
    assert acc(teacher, test) == pytest.approx(0.3, abs=0.02) and acc(student, test) == pytest.approx(0.7, abs=0.02)
    assert complementary_knowledge(teacher, student, test) == pytest.approx(float((side == 0).double().mean()),
                                                                            abs=0.02)
    assert complementary_knowledge(student, teacher, test) == pytest.approx(0.7, abs=0.02)


def test_partitioned_transfer_gains_and_keeps_what_the_student_knew(pair):
    train, test, side, teacher, student = pair
    state = copy.deepcopy(student.state_dict())
    new = transfer(teacher, student.train(), train.x, steps=150, lr=0.1, batch_size=64)
    assert acc(new, test, side == 1) >= 0.97  # what the student knew (half B) is kept
    assert acc(new, test, side == 0) >= 0.97  # what only the teacher knew (half A) is learnt
    assert acc(new, test) > acc(student, test) + 0.25
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in state.items())  # the student given is untouched
    assert student.training  # and keeps its mode
    assert new is not student
    student.eval()


def test_plain_kd_from_the_weaker_teacher_loses(pair):
    train, test, side, teacher, student = pair
    new = transfer(teacher, student, train.x, steps=150, lr=0.1, batch_size=64, partition=False)
    assert acc(new, test) < acc(student, test) - 0.3
    assert acc(new, test, side == 1) < 0.1  # the student's own half is overwritten by the teacher's mistakes


def test_complementary_knowledge_counts_positive_flips_only():
    y = [0, 1, 2, 0, 1, 2, 0, 1]
    t_pred = [0, 1, 2, 0, 0, 0, 1, 1]  # right on 0, 1, 2, 3, 7
    s_pred = [0, 0, 0, 1, 1, 2, 0, 0]  # right on 0, 4, 5, 6
    data = ArrayDataset(torch.arange(8.0)[:, None, None, None], torch.tensor(y), name="t", classes=["a", "b", "c"])
    assert complementary_knowledge(Table(t_pred), Table(s_pred), data) == pytest.approx(4 / 8)  # 1, 2, 3, 7
    assert complementary_knowledge(Table(s_pred), Table(t_pred), data) == pytest.approx(3 / 8)  # 4, 5, 6


# ------------------------------------------------------------------------------------------- pair gains
def test_gains_are_after_minus_before_in_points():
    nan = math.nan
    pg = PairGains(["a", "b"], np.array([0.5, 0.6]), np.array([[nan, 0.7], [0.4, nan]]),
                   np.array([[nan, 0.55], [0.65, nan]]), np.array([[nan, 0.2], [0.1, nan]]), np.array([0.5, 0.59]))
    assert np.allclose(pg.gains[[0, 1], [1, 0]], [10.0, -10.0])
    assert np.allclose(pg.kd_gains[[0, 1], [1, 0]], [-5.0, 15.0])
    assert np.allclose(pg.self_gains, [0.0, -1.0])
    assert np.isnan(np.diag(pg.gains)).all()


def test_pair_gains_of_the_constructed_pair(pair):
    train, test, _side, teacher, student = pair
    pg = pair_gains({"a_expert": teacher, "b_expert": student}, train, test, steps=150, lr=0.1, batch_size=64)
    assert pg.names == ["a_expert", "b_expert"]
    assert np.allclose(pg.before, [acc(teacher, test), acc(student, test)])
    for m in (pg.gains, pg.kd_gains, pg.complementary, pg.after, pg.after_kd):
        assert np.isnan(np.diag(m)).all() and np.isfinite(m[~np.eye(2, dtype=bool)]).all()
    assert pg.gains[0, 1] > 25 and pg.gains[1, 0] > 50  # each learns the other's half: both gain
    assert pg.kd_gains[0, 1] < -25  # plain KD from the weaker teacher loses
    assert pg.gains[0, 1] == pytest.approx(100 * (pg.after[0, 1] - pg.before[1]))
    assert pg.complementary[0, 1] == pytest.approx(complementary_knowledge(teacher, student, test))
    assert np.abs(pg.self_gains).max() < 2  # self-transfer changes (almost) nothing


# ------------------------------------------------------------------------------------------- bad input
def test_models_of_different_class_counts_are_refused(pair):
    train, test, _side, teacher, _student = pair
    three = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    with pytest.raises(ConfigError, match="^models: .*label space.*2 classes: teacher; 3 classes: student"):
        transfer(teacher, three, train.x, steps=1)
    with pytest.raises(ConfigError, match=r"^models: .*2 classes: a, b; 3 classes: c"):
        pair_gains({"a": teacher, "b": teacher, "c": three}, train, test, steps=1)


@pytest.mark.parametrize("pool", [torch.empty(0, 2, 1, 1), "empty-dataset"])
def test_an_empty_pool_is_refused(pair, pool):
    train, _test, _side, teacher, student = pair
    pool = train.subset(np.arange(0)) if isinstance(pool, str) else pool
    with pytest.raises(ConfigError, match="pool: .*empty"):
        transfer(teacher, student, pool, steps=1)


@pytest.mark.parametrize("option, value", [("steps", 0), ("lr", -0.1), ("lr", math.inf), ("batch_size", 0),
                                           ("temperature", 0.0)])
def test_bad_options_name_the_field(pair, option, value):
    train, _test, _side, teacher, student = pair
    with pytest.raises(ConfigError, match=f"^{option}:"):
        transfer(teacher, student, train, **{option: value})


def test_bad_pool_and_evaluation_are_refused(pair):
    train, test, _side, teacher, student = pair
    with pytest.raises(ConfigError, match="pool: a tensor pool must be images"):
        transfer(teacher, student, torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="models: need at least 2"):
        pair_gains({"a": teacher}, train, test)
    with pytest.raises(ConfigError, match="evaluation:"):
        pair_gains({"a": teacher, "b": student}, train, test.subset(np.arange(0)))
    with pytest.raises(ConfigError, match="data:"):
        complementary_knowledge(teacher, student, test.subset(np.arange(0)))


# ------------------------------------------------------------------------------------------- the study
def test_study_refuses_mixed_label_spaces(tiny_zoo):
    with pytest.raises(ConfigError, match=r"^sources: .*label space.*10 classes: mnist; 5 classes: mnist_0to4"):
        study_complementary(tiny_zoo, sources=["mnist", "mnist_0to4"])
    with pytest.raises(ConfigError, match="^sources: need at least 2"):
        study_complementary(tiny_zoo, sources=["mnist"])
    with pytest.raises(ConfigError, match="^scale:"):
        study_complementary(tiny_zoo, scale=0)


def test_study_on_a_tiny_zoo(tiny_zoo):
    before = {n: copy.deepcopy(tiny_zoo.load(n).state_dict()) for n in ("mnist", "mnist_invert", "mnist_rot90")}
    calls = []
    out = study_complementary(tiny_zoo, seed=0, scale=0.1, progress=lambda d, n, m: calls.append((d, n)))
    again = study_complementary(tiny_zoo, seed=0, scale=0.1)
    assert json.loads(json.dumps(out)) == again  # JSON-serialisable and deterministic
    names = out["names"]
    assert out["study"] == "complementary" and names == ["mnist", "mnist_invert", "mnist_rot90"]  # 10-class only
    k = len(names)
    for key in ("gains", "kd_gains", "complementary"):
        m = out[key]
        assert [m[i][i] for i in range(k)] == [None] * k
        assert all(isinstance(m[i][j], float) for i in range(k) for j in range(k) if i != j)
    rows = out["table"]
    assert len(rows) == k * (k - 1) and {(r["teacher"], r["student"]) for r in rows} == {
        (t, s) for t in names for s in names if t != s}
    gains = np.array([r["gain"] for r in rows])
    assert out["summary"]["share_gain"] == pytest.approx(float((gains > 0).mean()))
    assert out["summary"]["mean_gain"] == pytest.approx(float(gains.mean()))
    r = rows[0]
    i, j = names.index(r["teacher"]), names.index(r["student"])
    assert out["gains"][i][j] == r["gain"] and out["before"][j] == r["before"]
    total = 2 * k * (k - 1) + k  # both transfers of every pair, and each self-transfer
    assert calls[-1] == (total, total) and len(calls) == total + 1
    for n, state in before.items():  # the zoo's cached models are never modified
        assert all(torch.equal(v, tiny_zoo.load(n).state_dict()[key]) for key, v in state.items())
