"""Trajectory matching (MTT, FTD, AST): the matching loss against a closed-form student, a student that replays its
expert, the expert variants' limits, the expert cache, reproducibility and the early refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.condense import condense
from kdlab.condense.experts import ExpertConfig, expert_trajectories, train_expert
from kdlab.condense.trajectory_matching import (
    FlatNet,
    Minibatches,
    check_functional,
    kmeans_representatives,
    matching_loss,
    pca_2d,
    student_path,
)
from kdlab.errors import ConfigError
from tests.condense.conftest import SMALL_NET

TINY = {"n_experts": 1, "expert_epochs_total": 3, "max_start_epoch": 2, "syn_steps": 3, "batch_syn": 0,
        "expert_batch": 128}
FAST = {"ipc": 2, "iterations": 3, "model_params": SMALL_NET}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _linear(d: int, k: int) -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, k, bias=False)).double()
    nn.init.zeros_(net[1].weight)
    return net


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _closed_form(x: np.ndarray, y: np.ndarray, k: int, lr: float, steps: int) -> np.ndarray:
    """Full-batch SGD on softmax regression W (k, d) from 0: grad = (softmax(X W^T) - onehot)^T X / n."""
    w = np.zeros((k, x.shape[1]))
    onehot = np.eye(k)[y]
    for _ in range(steps):
        w = w - lr * (_softmax(x @ w.T) - onehot).T @ x / len(x)
    return w


def test_matching_loss_and_its_gradients_match_a_closed_form_student():
    rng = np.random.default_rng(0)
    x_np, y_np = rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    target = rng.normal(size=12)
    fn = FlatNet(_linear(4, 3))
    x = torch.tensor(x_np.reshape(6, 1, 2, 2), requires_grad=True)
    y = torch.tensor(y_np)
    lr = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    start = fn.vector()
    path = student_path(fn, start, x, y, lr, 2, Minibatches(y, 0, torch.Generator().manual_seed(0)))
    w2 = _closed_form(x_np, y_np, 3, 0.7, 2)
    assert np.allclose(path[1].detach().numpy(), _closed_form(x_np, y_np, 3, 0.7, 1).ravel(), atol=1e-12)
    assert np.allclose(path[2].detach().numpy(), w2.ravel(), atol=1e-12)
    loss = matching_loss(path[2], start, torch.tensor(target))
    expected = ((w2.ravel() - target) ** 2).sum() / (target ** 2).sum()  # start is W = 0
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    loss.backward()

    def hand(lr_: float) -> float:
        return ((_closed_form(x_np, y_np, 3, lr_, 2).ravel() - target) ** 2).sum() / (target ** 2).sum()

    h = 1e-6
    assert float(lr.grad) == pytest.approx((hand(0.7 + h) - hand(0.7 - h)) / (2 * h), rel=1e-5)
    assert float(x.grad.abs().sum()) > 0  # the images get a gradient through both steps


def test_the_loss_is_zero_when_the_student_replays_its_expert(digits_train):
    """Synthetic set = the expert's (full) batch, same learning rate: the student lands on the expert's epoch 3."""
    x, y = digits_train.x[:40].double(), digits_train.y[:40]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(4, 4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 64, 10)).double()
    fn = FlatNet(net)
    snaps, _ = train_expert(net, x, y, ExpertConfig(epochs=3, lr=0.1, batch_size=len(x)), (),
                            torch.Generator().manual_seed(0))
    path = student_path(fn, snaps[0], x, y, 0.1, 3, Minibatches(y, 0, torch.Generator().manual_seed(1)))
    assert float(matching_loss(path[3], snaps[0], snaps[3]).detach()) < 1e-20
    assert float(matching_loss(path[2], snaps[0], snaps[3]).detach()) > 0.01  # one step short is far from it
    replay = student_path(fn, snaps[0], x, y, 0.05, 3, Minibatches(y, 0, torch.Generator()))
    assert float(matching_loss(replay[3], snaps[0], snaps[3]).detach()) > 0.01  # another learning rate misses it


def _tiny_expert(variant: str, **kw) -> torch.Tensor:
    x, y = torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 4
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    cfg = ExpertConfig(epochs=2, lr=0.1, batch_size=32, variant=variant, **kw)
    return train_expert(net, x, y, cfg, (), torch.Generator().manual_seed(0))[0]


def test_expert_variants_reduce_to_plain_sgd_at_their_limits_and_clip_scales_the_step():
    plain = _tiny_expert("plain")
    assert torch.allclose(_tiny_expert("flat", rho=0.0, alpha=0.4), plain, atol=1e-6)  # no perturbation: SGD
    assert not torch.allclose(_tiny_expert("flat", rho=0.5, alpha=0.4), plain, atol=1e-4)
    assert torch.allclose(_tiny_expert("smooth", clip=100.0, penalty=0.0), plain, atol=1e-6)
    assert not torch.allclose(_tiny_expert("smooth", clip=100.0, penalty=0.5), plain, atol=1e-4)
    # a loss of about ln 4 clipped to 0.5: the first step is the plain one scaled by 0.5 / loss
    x, y = torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 4
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    loss0 = float(nn.functional.cross_entropy(net(x), y).detach())
    clipped = _tiny_expert("smooth", clip=0.5, penalty=0.0)
    assert torch.allclose(clipped[1] - clipped[0], (plain[1] - plain[0]) * 0.5 / loss0, atol=1e-7)


def test_experts_are_cached_by_content(digits_train, tmp_path):
    x, y = digits_train.x[:60], digits_train.y[:60]
    cfg = ExpertConfig(n_experts=2, epochs=2, batch_size=32)
    a = expert_trajectories(x, y, "convnet", SMALL_NET, 10, cfg, seed=0, folder=tmp_path)
    mtime = a.path.stat().st_mtime_ns
    b = expert_trajectories(x, y, "convnet", SMALL_NET, 10, cfg, seed=0, folder=tmp_path)
    assert a.trained and not b.trained and b.key == a.key and b.path.stat().st_mtime_ns == mtime
    assert torch.equal(a.params, b.params) and a.params.shape[:2] == (2, 3) and a.params.dtype == torch.float32
    assert not torch.equal(a.params[0], a.params[1])  # two experts, two initialisations
    for change in ({"seed": 1}, {"x": x + 1e-3}, {"config": ExpertConfig(n_experts=2, epochs=2, batch_size=32,
                                                                         variant="flat")}):
        kw = {"x": x, "y": y, "model": "convnet", "model_params": SMALL_NET, "num_classes": 10, "config": cfg,
              "seed": 0, "folder": tmp_path, **change}
        assert expert_trajectories(**kw).key != a.key
    a.path.write_bytes(b"damaged")
    assert expert_trajectories(x, y, "convnet", SMALL_NET, 10, cfg, seed=0, folder=tmp_path).trained


@pytest.mark.parametrize("method", ["mtt", "ftd", "smooth_mtt"])
def test_same_seed_same_set_other_seed_other_set(digits_train, method):
    a = condense(digits_train, method=method, seed=0, method_params=TINY, **FAST)
    b = condense(digits_train, method=method, seed=0, method_params=TINY, **FAST)
    c = condense(digits_train, method=method, seed=1, method_params=TINY, **FAST)
    assert a.meta["experts_trained"] and not b.meta["experts_trained"]  # the second run reads the cache...
    assert torch.equal(a.x, b.x) and a.meta["loss"] == b.meta["loss"]  # ...and gives the same set
    assert not torch.equal(a.x, c.x) and c.meta["expert_key"] != a.meta["expert_key"]
    assert a.x.shape == (20, 1, 8, 8) and torch.isfinite(a.x).all()
    assert a.meta["syn_lr"] != pytest.approx(0.01, abs=1e-9)  # the learning rate was learned


def test_mtt_records_paths_distances_and_the_learned_rate(digits_train, own_cache):
    s = condense(digits_train, method="mtt", method_params=TINY, **FAST)
    e, st, d = s.extras["expert_path_2d"], s.extras["student_path_2d"], s.extras["distance_to_expert"]
    assert e.shape == st.shape == (4, 2) and d.shape == (4,) and e.dtype == st.dtype == d.dtype == np.float64
    assert d[0] == 0 and (d[1:] > 0).all()  # both start from the expert's epoch 0, then part
    assert np.allclose(e[0], st[0])
    assert s.extras["syn_lr_history"][-1] == pytest.approx(s.meta["syn_lr"])
    assert set(s.extras["start_epochs"].tolist()) <= {0, 1}
    assert (own_cache / "condense" / "experts" / f"{s.meta['expert_key']}.pt").is_file()
    assert s.meta["stored_images"] == 20 and s.meta["lr_img"] == 100.0


def test_ftd_returns_the_moving_average_of_the_images(digits_train):
    """One iteration: EMA = d * start + (1 - d) * raw images (ema_decay 0 keeps the raw ones)."""
    run = {"method": "ftd", "ipc": 2, "model_params": SMALL_NET}
    start = condense(digits_train, iterations=0, method_params=TINY, **run).x
    raw = condense(digits_train, iterations=1, method_params={**TINY, "ema_decay": 0.0}, **run).x
    avg = condense(digits_train, iterations=1, method_params={**TINY, "ema_decay": 0.75}, **run).x
    assert not torch.allclose(raw, start, atol=1e-3)
    assert torch.allclose(avg, 0.75 * start + 0.25 * raw, atol=1e-5)


def test_the_image_step_is_limited_to_max_step_rms(digits_train):
    run = {"method": "mtt", "ipc": 2, "model_params": SMALL_NET}
    start = condense(digits_train, iterations=0, method_params=TINY, **run).normalized()

    def step_rms(limit: float) -> float:
        x = condense(digits_train, iterations=1, method_params={**TINY, "max_step_rms": limit}, **run).normalized()
        return float((x - start).pow(2).mean().sqrt())

    free = step_rms(0.0)
    assert free > 0.05  # MTT's rate takes a large first step here...
    assert step_rms(0.01) == pytest.approx(0.01, rel=1e-3)  # ...which the limit cuts to 0.01 per pixel (rms)


def test_pca_keeps_distances_of_a_plane_and_flattens_a_line():
    rng = np.random.default_rng(0)
    basis = torch.tensor(rng.normal(size=(2, 50)))
    a, b = torch.tensor(rng.normal(size=(5, 2))) @ basis, torch.tensor(rng.normal(size=(4, 2))) @ basis
    pa, pb = pca_2d(a + 3.0, b + 3.0)
    both, proj = torch.cat([a, b]), np.concatenate([pa, pb])
    assert np.allclose(torch.cdist(both, both).numpy(), np.linalg.norm(proj[:, None] - proj[None], axis=-1))
    (line,) = pca_2d(torch.linspace(0, 1, 6).double().unsqueeze(1) * basis[:1])
    assert np.allclose(line[:, 1], 0) and np.allclose(np.diff(line[:, 0]), np.diff(line[:, 0])[0])


def test_minibatches_cover_every_image_and_balance_classes():
    y = torch.arange(4).repeat_interleave(3)
    g = torch.Generator().manual_seed(0)
    plain = Minibatches(y, 5, g)
    first = torch.cat([plain.next() for _ in range(3)])  # 12 images: batches of 5, 5, 2
    assert sorted(first.tolist()) == list(range(12))
    balanced = Minibatches(y, 8, g, balanced=True)
    for _ in range(3):
        assert torch.bincount(y[balanced.next()], minlength=4).tolist() == [2, 2, 2, 2]


def test_kmeans_representatives_pick_one_image_per_cluster():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(5, 2, generator=torch.Generator().manual_seed(i))
                     for i, c in enumerate(centres)])
    idx = kmeans_representatives(pts, 3, torch.Generator().manual_seed(0))
    assert sorted((idx // 5).tolist()) == [0, 1, 2]


def test_models_that_cannot_be_trained_functionally_are_refused_before_any_work(digits_train, own_cache):
    with pytest.raises(ConfigError, match=r"condense.model: 'resnet8' cannot be trained functionally for trajectory "
                                          r"matching: bn1 \(BatchNorm2d\) keeps running statistics; use convnet"):
        condense(digits_train, method="mtt", ipc=1, iterations=1, model="resnet8", model_params={},
                 method_params=TINY)
    with pytest.raises(ConfigError, match=r"features.0.1 \(BatchNorm2d\)"):
        condense(digits_train, method="ftd", ipc=1, iterations=1, method_params=TINY,
                 model_params={**SMALL_NET, "norm": "batchnorm"})
    assert not list(own_cache.rglob("*.pt"))  # no expert was trained

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.spare = nn.Linear(4, 2), nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(ConfigError, match="does not depend on spare"):
        check_functional(Unused(), "custom", (1, 2, 2))

    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.fc(x.flatten(1))

    with pytest.raises(ConfigError, match="changes the buffer calls"):
        check_functional(Counter(), "custom", (1, 2, 2))
    check_functional(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "mlp", (1, 2, 2))  # accepted


def test_bad_inputs_are_refused_before_any_work(digits_train, own_cache):
    with pytest.raises(ConfigError, match="fewer"):
        condense(digits_train, method="mtt", ipc=10_000, iterations=1, method_params=TINY)
    with pytest.raises(ConfigError, match=r"condense.method_params.max_start_epoch: .* valid: max_start_epoch <= 2"):
        condense(digits_train, method="mtt", method_params={**TINY, "max_start_epoch": 3}, **FAST)
    with pytest.raises(ConfigError, match="condense.method_params.syn_steps"):
        condense(digits_train, method="smooth_mtt", method_params={**TINY, "syn_steps": 0}, **FAST)
    assert not list(own_cache.rglob("*.pt"))
