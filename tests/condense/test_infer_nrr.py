"""INFER's honest budget and shared compensators; NRR-DD's fixed critical pixels and Grad-CAM; seeding; bad input."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kdlab.condense.infer as infer_mod
import kdlab.condense.nrr as nrr_mod
from kdlab.condense import condense
from kdlab.errors import ConfigError
from tests.condense.conftest import SMALL_NET

TINY = {"committee": ["convnet", "mlp"], "committee_epochs": 1}
FAST = {"model_params": SMALL_NET, "iterations": 2}
NRR = {"teacher_epochs": 1}


@pytest.mark.parametrize("k", [2, 10, 100])
@pytest.mark.parametrize("members", [1, 2, 3, 5])
def test_infer_budget_fits_ipc_and_uses_as_many_bases_as_fit(k, members):
    smallest = math.ceil((k + members) / k)
    for ipc in range(1, 25):
        if ipc < smallest:
            with pytest.raises(ConfigError, match=rf"condense\.ipc: .*ipc >= {smallest}"):
                infer_mod.budget(ipc, k, members)
            continue
        b, m = infer_mod.budget(ipc, k, members)
        assert b >= 1 and m == members * b
        assert b * k + m <= ipc * k < (b + 1) * k + members * (b + 1)  # fits, and one more base set would not
    assert infer_mod.budget(10, 10, 4) == (7, 28)  # the reference's CIFAR-10 IPC-10 split with 4 architectures


def test_infer_stores_at_most_ipc_images_per_class_and_shares_each_compensator_across_classes(digits_train):
    s = condense(digits_train, method="infer", ipc=3, method_params=TINY, **FAST)
    k, b, m = 10, 2, 4  # floor(3 * 10 / 12) = 2 base sets, 2 members -> 4 compensators
    base, comp = s.extras["base"], s.extras["compensators"]
    assert (s.meta["base_per_class"], s.meta["compensators"]) == (b, m)
    assert s.meta["stored_images"] == len(base) + len(comp) == b * k + m <= 3 * k
    assert s.meta["training_samples"] == len(s.x) == k * (b + m) and s.soft.shape == (len(s.x), k)
    assert s.y.tolist() == torch.arange(k).repeat_interleave(b + m).tolist()
    base, comp = torch.from_numpy(base), torch.from_numpy(comp)
    x = s.x.view(k, b + m, *s.x.shape[1:])
    assert torch.equal(x[:, :b].flatten(0, 1), base)  # the base images are stored as they are, and are real
    assert float(torch.cdist(base.flatten(1), digits_train.x.flatten(1)).min(1).values.max()) < 1e-4
    for t in range(m):
        j = int(s.extras["compensator_base"][t])
        diff = x[:, b + t] - base.view(k, b, *base.shape[1:])[:, j]  # the same offset on every class's base image
        assert torch.allclose(diff, comp[t].expand_as(diff), atol=1e-5)
        assert float(comp[t].abs().max()) > 0
    assert s.extras["compensator_member"].tolist() == [0, 1, 0, 1]


def test_infer_resumes_from_the_stored_layout_of_its_snapshot(digits_train):
    snaps = {}
    full = condense(digits_train, method="infer", ipc=2, method_params=TINY, snapshot_every=1,
                    progress=lambda it, _m, snap: snaps.__setitem__(it, snap), **FAST)
    assert snaps[2].x.shape == (20, 1, 8, 8)  # the stored budget, ipc * K images
    again = condense(digits_train, method="infer", ipc=2, method_params=TINY, start=snaps[2], **FAST)
    assert torch.allclose(torch.from_numpy(again.extras["compensators"]),
                          torch.from_numpy(full.extras["compensators"]), atol=1e-5)


def test_infer_ipc_too_small_names_the_smallest_valid_ipc_before_any_work(digits_train, monkeypatch):
    monkeypatch.setattr(infer_mod, "train_committee", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ConfigError, match=r"condense\.ipc: .*ipc >= 2, got 1"):
        condense(digits_train, method="infer", ipc=1, method_params=TINY, **FAST)


def test_grad_cam_of_an_identity_feature_is_relu_of_mean_weight_times_pixels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight[1] = 0.5  # class 1: every position helps equally
        net[2].weight[2] = -0.25  # class 2: every position hurts
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 1, 8, 8)
    cam = nrr_mod.grad_cam(net, x, torch.tensor([1, 2]), "0")
    assert torch.allclose(cam[0], torch.relu(0.5 * x[0, 0]), atol=1e-6)
    assert torch.allclose(cam[1], torch.relu(-0.25 * x[1, 0]), atol=1e-6)


def test_critical_mask_keeps_the_highest_share_of_each_image():
    cam = torch.tensor([[[0.1, 0.9], [0.5, 0.2]], [[0.0, 0.0], [0.0, 3.0]]])
    mask = nrr_mod.critical_mask(cam, 0.5)
    assert mask.shape == (2, 1, 2, 2)
    assert mask[0, 0].tolist() == [[False, True], [True, False]]
    assert mask[1, 0].tolist() == [[True, False], [False, True]]  # a tie goes to the earlier position
    assert not nrr_mod.critical_mask(cam, 0.0).any() and nrr_mod.critical_mask(cam, 1.0).all()


def test_nrr_keeps_critical_pixels_exactly_and_refines_the_rest(digits_train):
    start = condense(digits_train, method="nrr_dd", ipc=2, method_params=NRR, **{**FAST, "iterations": 0})
    done = condense(digits_train, method="nrr_dd", ipc=2, method_params=NRR, **FAST)
    mask = torch.from_numpy(done.extras["critical_mask"]).expand_as(done.x)
    assert torch.equal(mask, torch.from_numpy(start.extras["critical_mask"]).expand_as(done.x))
    assert int(mask[:, 0].flatten(1).sum(1).unique()) == 32  # half of the 8x8 pixels of every image
    assert torch.equal(done.x[mask], start.x[mask])  # bit for bit
    assert not torch.equal(done.x[~mask], start.x[~mask])
    assert float(torch.cdist(start.x.flatten(1), digits_train.x.flatten(1)).min(1).values.max()) < 1e-4
    assert done.soft.sum(1).tolist() == pytest.approx([1.0] * 20, abs=1e-5)
    assert done.meta["cam_stage"] == "features.1"  # the last stage of a 2-block ConvNet on 8x8 is 2x2


def test_nrr_bad_input_fails_before_any_work(digits_train, monkeypatch):
    monkeypatch.setattr(nrr_mod, "train_committee", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ConfigError, match=r"condense\.init"):
        condense(digits_train, method="nrr_dd", ipc=2, init="noise", method_params=NRR, **FAST)
    with pytest.raises(ConfigError, match=r"condense\.method_params\.teacher"):
        condense(digits_train, method="nrr_dd", ipc=2, method_params={**NRR, "teacher": "mlp"}, **FAST)


@pytest.mark.parametrize("method", ["infer", "nrr_dd"])
def test_same_seed_same_set(digits_train, method):
    params = {"infer": TINY, "nrr_dd": NRR}[method]
    a, b, c = (condense(digits_train, method=method, ipc=2, seed=s, method_params=params, **FAST) for s in (1, 1, 2))
    assert torch.equal(a.x, b.x) and torch.equal(a.soft, b.soft)
    assert not torch.equal(a.x, c.x)
