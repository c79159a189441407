"""KRR-ST and the transfer protocol: the KRR solution against the primal normal equations, the outer loss at its
zero, the Barlow Twins formula, seeding, bad input; the linear probe, the targets and one small transfer table."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.condense import condense
from kdlab.condense.matching import embed
from kdlab.condense.self_supervised import barlow_twins_loss, krr_loss, krr_predict
from kdlab.condense.transfer_eval import (
    FULL_DATA,
    NO_PRETRAINING,
    TransferConfig,
    evaluate_transfer,
    pretrain,
    probe_accuracy,
    transfer_targets,
)
from kdlab.errors import ConfigError
from kdlab.models import create
from tests.condense.conftest import SMALL_NET

FAST = {"model_params": SMALL_NET, "batch_real": 8}
KRR_FAST = {"models": 2, "online_iterations": 3, "ssl_epochs": 1, "target_width": 8}


@pytest.mark.parametrize("n_syn,dim,ridge", [(6, 3, 1e-2), (4, 7, 1e-3)])
def test_krr_matches_the_primal_normal_equations(n_syn, dim, ridge):
    rng = np.random.default_rng(n_syn)
    fs, ys, fr = rng.normal(size=(n_syn, dim)), rng.normal(size=(n_syn, 2)), rng.normal(size=(5, dim))
    pred = krr_predict(torch.from_numpy(fs), torch.from_numpy(ys), torch.from_numpy(fr), ridge).numpy()
    a, b = np.hstack([fs, np.ones((n_syn, 1))]), np.hstack([fr, np.ones((5, 1))])
    lam = ridge * np.trace(a @ a.T)
    w = np.linalg.solve(a.T @ a + lam * np.eye(dim + 1), a.T @ ys)  # primal ridge regression with a bias
    np.testing.assert_allclose(pred, b @ w, rtol=1e-9, atol=1e-12)


def test_krr_without_ridge_is_least_squares():
    rng = np.random.default_rng(1)
    fs, ys, fr = rng.normal(size=(4, 6)), rng.normal(size=(4, 3)), rng.normal(size=(5, 6))
    pred = krr_predict(torch.from_numpy(fs), torch.from_numpy(ys), torch.from_numpy(fr), 0.0).numpy()
    w = np.linalg.lstsq(np.hstack([fs, np.ones((4, 1))]), ys, rcond=None)[0]  # minimum-norm interpolant
    np.testing.assert_allclose(pred, np.hstack([fr, np.ones((5, 1))]) @ w, rtol=1e-8, atol=1e-10)


def test_outer_loss_is_zero_when_the_real_batch_is_the_synthetic_set():
    torch.manual_seed(0)
    net = create("convnet", 5, (1, 8, 8), **SMALL_NET)
    xs, ys, xr = torch.randn(10, 1, 8, 8), torch.randn(10, 5), torch.randn(12, 1, 8, 8)
    with torch.no_grad():
        fs = embed(net, xs).double()
        own = float(krr_loss(fs, ys.double(), fs, ys.double(), 1e-9))
        other = float(krr_loss(fs, ys.double(), embed(net, xr).double(), torch.randn(12, 5).double(), 1e-9))
    assert own < 1e-10 * float(ys.pow(2).mean()) and other > 0.1


def test_barlow_twins_loss_is_the_formula():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # standardised, uncorrelated columns
    assert float(barlow_twins_loss(z, z)) == pytest.approx(0.0, abs=1e-6)
    assert float(barlow_twins_loss(z, -z)) == pytest.approx(2 * 4.0)  # (1 - (-1))^2 per column
    swap = z[:, [1, 0]]  # c = [[0, 1], [1, 0]]: both diagonal terms 1, both off-diagonal terms weighed by lam
    assert float(barlow_twins_loss(z, swap, lam=0.25)) == pytest.approx(2.0 + 0.25 * 2.0)


def test_same_seed_same_set_other_seed_other_set(digits_train):
    a, b, c = (condense(digits_train, method="krr_st", ipc=1, iterations=2, seed=s, method_params=KRR_FAST, **FAST)
               for s in (3, 3, 4))
    assert torch.equal(a.x, b.x) and np.array_equal(a.extras["representations"], b.extras["representations"])
    assert not torch.equal(a.x, c.x)
    reps = a.extras["representations"]
    assert reps.dtype == np.float32 and reps.shape == (10, 8) and torch.equal(a.y, torch.arange(10))
    assert a.meta["stored_images"] == pytest.approx(10 * (1 + 8 / 64))


@pytest.mark.parametrize("params,field", [({"models": 0}, "models"), ({"ridge": -1.0}, "ridge"),
                                          ({"target_width": 1}, "target_width")])
def test_bad_input_names_the_field(digits_train, params, field):
    with pytest.raises(ConfigError, match=f"condense.method_params.{field}"):
        condense(digits_train, method="krr_st", ipc=1, method_params=params)


def test_linear_probe_separates_a_linearly_separable_toy():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g)
    f = torch.randn(600, 6, generator=g)
    scores = f @ w
    top2 = scores.topk(2, 1).values
    keep = top2[:, 0] - top2[:, 1] > 0.3  # a margin, so the classes are linearly separable
    f, y = f[keep], scores[keep].argmax(1)
    assert probe_accuracy(f[:300], y[:300], f[300:], y[300:], 3, l2=0.0) == 1.0
    shuffled = y[torch.randperm(len(y), generator=g)]
    assert probe_accuracy(f[:300], shuffled[:300], f[300:], shuffled[300:], 3, l2=0.0) < 0.7


def test_transfer_targets_are_small_labelled_shifted_or_resized():
    targets = transfer_targets("digits", labels_per_class=5, shifts=[("rotate", 0.5)])
    mnist_te, rot_te = targets["mnist5k 8x8"][1], targets["digits rotate 0.5"][1]
    for tr, te in targets.values():
        assert tr.in_shape == te.in_shape == (1, 8, 8)
        assert torch.equal(torch.bincount(tr.y, minlength=10), torch.full((10,), 5))
    assert len(mnist_te) == 1000 and len(rot_te) == 360
    plain = transfer_targets("digits", labels_per_class=5, shifts=[("rotate", 0.0)])["digits rotate 0"][1]
    assert torch.equal(plain.y, rot_te.y) and not torch.allclose(plain.x, rot_te.x)  # the same test images, turned
    with pytest.raises(ConfigError, match="source_name"):
        transfer_targets("cifar10")


def test_pretraining_regresses_the_representations_of_a_krr_st_set(digits_train):
    s = condense(digits_train, method="krr_st", ipc=1, iterations=1, method_params=KRR_FAST, **FAST)
    cfg = TransferConfig(model_params=SMALL_NET, pretrain_epochs=150)
    net = pretrain(s, (1, 8, 8), 10, cfg).net
    reps = torch.from_numpy(s.extras["representations"])
    with torch.no_grad():
        out = net(s.normalized())
    assert out.shape == reps.shape
    assert float((out - reps).pow(2).mean()) < 0.1 * float((reps - reps.mean(0)).pow(2).mean())


def test_transfer_table_has_a_row_per_set_target_and_protocol(digits_train):
    s = condense(digits_train, method="random", ipc=1)
    targets = dict(list(transfer_targets("digits", labels_per_class=3, shifts=[("noise", 0.3)]).items())[1:])
    df = evaluate_transfer({"random": s}, targets, full=digits_train, model_params=SMALL_NET, pretrain_epochs=2,
                           full_epochs=1, finetune_epochs=1)
    assert list(df.columns) == ["set", "target", "protocol", "acc"] and len(df) == 6
    assert set(df["set"]) == {NO_PRETRAINING, "random", FULL_DATA} and set(df["protocol"]) == {"linear", "finetune"}
    assert df["acc"].between(0, 1).all()
    with pytest.raises(ConfigError, match="transfer.finetune_epochs"):
        TransferConfig(finetune_epochs=0)
