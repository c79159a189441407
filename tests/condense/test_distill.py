"""condense(): reproducible per seed, every method runs on 1- and 3-channel data, DM lowers its objective."""
from __future__ import annotations

import pytest
import torch

from kdlab.condense import CondenseConfig, condense
from kdlab.condense.distill import channel_stats
from kdlab.condense.matching import class_means, dm_loss, embed
from kdlab.data import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models import create
from tests.condense.conftest import SMALL_NET

FAST = {"model_params": SMALL_NET, "batch_real": 16, "reference_epochs": 1, "dc_outer_loop": 1,
        "dc_inner_loop": 1}


def test_same_seed_same_set_other_seed_other_set(digits_train):
    a = condense(digits_train, method="dm", ipc=1, iterations=3, seed=3, **FAST)
    b = condense(digits_train, method="dm", ipc=1, iterations=3, seed=3, **FAST)
    c = condense(digits_train, method="dm", ipc=1, iterations=3, seed=4, **FAST)
    assert torch.equal(a.x, b.x) and a.meta["loss"] == b.meta["loss"]
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (10, 1, 8, 8) and a.y.tolist() == list(range(10))


@pytest.mark.parametrize("method", ["dm", "datadam", "dc", "random", "herding"])
@pytest.mark.parametrize("data", ["digits_train", "rgb_train"])
def test_every_method_runs_and_keeps_labels(request, method, data):
    train = request.getfixturevalue(data)
    s = condense(train, method=method, ipc=2, iterations=2, **FAST)
    c = train.in_shape[0]
    assert s.x.shape == (20, c, 8, 8) and torch.isfinite(s.x).all()
    assert torch.equal(s.y, torch.arange(10).repeat_interleave(2))
    assert s.mean == pytest.approx(channel_stats(train.x)[0])
    if method in ("random", "herding"):  # selections are real images (up to the normalisation round trip)
        nearest = torch.cdist(s.x.flatten(1), train.x.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
        nearest = nearest.min(1).values
        assert float(nearest.max()) < 1e-4


def test_progress_snapshots_at_every_k_and_the_end(digits_train):
    seen = []
    condense(digits_train, method="dm", ipc=1, iterations=5, snapshot_every=2, fyi=True,
             progress=lambda it, m, snap: seen.append((it, snap is not None, m["loss"])), **FAST)
    assert [it for it, snap, _ in seen if snap] == [0, 2, 4, 5]
    assert [it for it, _, _ in seen] == list(range(6))


def test_dm_from_noise_lowers_the_distribution_gap_on_fresh_networks(digits_train):
    """The DM objective averaged over networks never used in training drops after distilling."""
    cfg = {"method": "dm", "ipc": 1, "init": "noise", "dsa": False, "batch_real": 64, "model_params": SMALL_NET}
    start = condense(digits_train, iterations=0, **cfg)
    done = condense(digits_train, iterations=60, **cfg)
    real = (digits_train.x - start.mean[0]) / start.std[0]
    by_class = torch.cat([real[digits_train.y == c][:30] for c in range(10)])

    def gap(s) -> float:
        torch.manual_seed(123)
        total = 0.0
        for _ in range(5):
            net = create("convnet", 10, (1, 8, 8), **SMALL_NET)
            with torch.no_grad():
                total += float(dm_loss(class_means(embed(net, by_class), 10), embed(net, s.normalized()), 10))
        return total

    assert gap(done) < 0.5 * gap(start)


def test_soft_labels_are_distributions(digits_train):
    s = condense(digits_train, method="random", ipc=1, labels="soft", **FAST)
    assert s.soft.shape == (10, 10) and torch.allclose(s.soft.sum(1), torch.ones(10), atol=1e-5)
    assert torch.equal(s.targets(), s.soft)


@pytest.mark.parametrize("bad,match", [({"method": "mttt"}, "condense.method.*mtt"), ({"ipc": 0}, "ipc"),
                                       ({"init": "zeros"}, "init"), ({"model": "nope"}, "nope"),
                                       ({"dsa_strategy": "blur"}, "valid")])
def test_bad_config_names_the_field(bad, match):
    with pytest.raises((ConfigError, KeyError), match=match):
        CondenseConfig(**bad)


def test_a_run_continued_from_a_snapshot_starts_from_its_images(digits_train):
    snaps = {}
    cfg = dict(method="dm", ipc=2, iterations=6, snapshot_every=3, model_params=SMALL_NET, seed=0)
    full = condense(digits_train, **cfg, progress=lambda it, m, snap: snap is not None and snaps.setdefault(it, snap))
    done = condense(digits_train, **cfg, start=snaps[6])  # nothing left to learn: the snapshot's images back
    assert torch.allclose(done.x, snaps[6].x, atol=1e-5) and torch.allclose(full.x, snaps[6].x, atol=1e-5)
    steps = []
    more = condense(digits_train, **cfg, start=snaps[3], progress=lambda it, m, snap: steps.append(it))
    assert steps == [4, 5, 6] and not torch.allclose(more.x, snaps[3].x)  # only the iterations after it
    with pytest.raises(ConfigError, match="start: a snapshot of"):
        condense(digits_train, **{**cfg, "ipc": 1}, start=snaps[3])


def _four_per_class(train: ArrayDataset) -> ArrayDataset:
    """The first 4 images of each class: ``batch_real=4`` then matches against every real image of a class."""
    idx = torch.cat([(train.y == c).nonzero().flatten()[:4] for c in range(train.num_classes)])
    return ArrayDataset(train.x[idx], train.y[idx], "digits-4", list(train.classes))


DC_ONE_STEP = {"method": "dc", "init": "real", "dsa": False, "batch_real": 4, "iterations": 1, "dc_outer_loop": 1,
               "dc_inner_loop": 1, "model_params": SMALL_NET, "seed": 0}


def test_dc_loss_is_the_per_class_gradient_distance_of_zhao_et_al(digits_train):
    """DC (Zhao, Mopuri & Bilen, ICLR 2021): sum over classes c of D(grad CE(real of c, c), grad CE(syn of c, c)),
    D = sum over weight tensors and output units of 1 - cos (eps 1e-6 as in the reference, 1-d parameters
    skipped), on the first fresh network (the first global draw after ``torch.manual_seed(seed)``). Recomputed
    here in float64 from the iteration-0 snapshot; a loss that matched class c against another class's real
    images comes out ~7x larger."""
    small = _four_per_class(digits_train)
    snaps = {}
    s = condense(small, ipc=2, progress=lambda it, m, snap: snaps.setdefault(it, snap), **DC_ONE_STEP)
    torch.manual_seed(DC_ONE_STEP["seed"])
    net = create("convnet", 10, small.in_shape, **SMALL_NET).train()
    params = [p for p in net.parameters() if p.requires_grad]
    real = (small.x - torch.tensor(s.mean).view(1, -1, 1, 1)) / torch.tensor(s.std).view(1, -1, 1, 1)
    syn = snaps[0].normalized()

    def grads(x: torch.Tensor, c: int) -> list[torch.Tensor]:
        loss = torch.nn.functional.cross_entropy(net(x), torch.full((len(x),), c))
        return [g.double() for g in torch.autograd.grad(loss, params)]

    def distance(ga: list[torch.Tensor], gb: list[torch.Tensor]) -> float:
        total = 0.0
        for a, b in zip(ga, gb, strict=True):
            if a.ndim > 1:
                a, b = a.flatten(1), b.flatten(1)
                total += float((1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-6)).sum())
        return total

    expected = sum(distance(grads(real[small.y == c], c), grads(syn[snaps[0].y == c], c)) for c in range(10))
    assert s.meta["loss"] == [pytest.approx(expected, rel=1e-5)]


def test_dc_loss_vanishes_when_the_synthetic_set_is_the_real_set(digits_train):
    """IPC = all 4 real images of each class: each class's synthetic gradient is its real gradient, so every
    cosine is ~1 (only the 1e-6 in its denominator leaves ~0.02 in all); synthetic images of class c matched
    against the real images of another class would give hundreds."""
    s = condense(_four_per_class(digits_train), ipc=4, **DC_ONE_STEP)
    assert 0 <= s.meta["loss"][0] < 0.1
