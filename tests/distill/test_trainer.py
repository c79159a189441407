"""The trainer: learning, per-term telemetry, checkpoints and exact resume, NaN stop, teacher cache."""
from __future__ import annotations

import random

import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.trainer import Callback, TrainConfig, Trainer
from kdlab.errors import CheckpointError, NonFiniteLossError, ShapeError
from kdlab.models import create
from kdlab.models.checkpoints import load_state


def _kd(teacher, seed=0, student="mlp", **params):
    torch.manual_seed(seed)
    s = create(student, 4, (1, 12, 12), **({"width": 32} if student == "mlp" else {"width": 8, "depth": 2}))
    return create_distiller("kd", teacher, s, (1, 12, 12), **params)


def _cfg(**kw):
    base = dict(epochs=3, batch_size=32, lr=0.05, log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def test_learns_and_reports_every_term(tiny_data, tiny_teacher):
    train, val = tiny_data
    events = []

    class Rec(Callback):
        def on_step_end(self, trainer, metrics):
            events.append(("step", metrics))

        def on_epoch_end(self, trainer, metrics):
            events.append(("epoch", metrics))

    result = Trainer(_kd(tiny_teacher), _cfg(epochs=5), [Rec()]).fit(train, val)
    first, last = result.history[0], result.history[-1]
    for key in ("train/ce", "train/kd", "train/loss", "train/acc", "val/acc", "val/agreement", "lr",
                "throughput"):
        assert key in last
    assert last["train/loss"] == pytest.approx(last["train/ce"] + last["train/kd"], rel=1e-5)
    assert last["train/loss"] < first["train/loss"]
    assert last["val/acc"] >= 0.9
    assert result.best["val/acc"] == max(h["val/acc"] for h in result.history)
    assert sum(1 for kind, _ in events if kind == "epoch") == 5
    assert sum(1 for kind, _ in events if kind == "step") == 5 * 6 // 2
    assert "val_acc" in result.teacher


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_data, tiny_teacher, tmp_path):
    train, val = tiny_data
    straight = _kd(tiny_teacher)
    Trainer(straight, _cfg(epochs=4)).fit(train, val)

    # interrupt after 2 of 4 epochs: train 2 epochs with the 4-epoch schedule, then resume
    first = _kd(tiny_teacher)
    t1 = Trainer(first, _cfg(epochs=4), checkpoint_dir=tmp_path)
    t1.config.epochs = 2
    t1.fit(train, val)
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    resumed = _kd(tiny_teacher, seed=99)
    t2 = Trainer(resumed, _cfg(epochs=4), checkpoint_dir=tmp_path)
    result = t2.fit(train, val, resume_from=tmp_path / "last.pt")
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _python_mixup(n, alpha, device="cpu"):
    """``sample_mixup`` drawing from Python's ``random`` instead of torch's global RNG."""
    return random.betavariate(alpha, alpha), torch.tensor(random.sample(range(n), n), device=device)


@pytest.mark.parametrize("rng", ["torch", "python"])
def test_resume_restores_the_global_rngs_a_method_draws_from(tiny_data, tiny_teacher, tmp_path, monkeypatch, rng):
    """mixup_kd draws a mixing weight and a permutation every step (from torch's global RNG, or, patched, from
    Python's ``random``): 2 epochs + resume + 2 epochs gives exactly the 4-epoch run only if the checkpoint
    restores that RNG's state."""
    if rng == "python":
        monkeypatch.setattr("kdlab.distill.methods.mixup_kd.sample_mixup", _python_mixup)
    train, val = tiny_data

    def mixup_kd(seed=0):
        torch.manual_seed(seed)
        student = create("mlp", 4, (1, 12, 12), width=32)
        return create_distiller("mixup_kd", tiny_teacher, student, (1, 12, 12), temperature=2.0)

    straight = mixup_kd()
    full = Trainer(straight, _cfg(epochs=4)).fit(train, val)
    first = Trainer(mixup_kd(), _cfg(epochs=4), checkpoint_dir=tmp_path)
    first.config.epochs = 2
    first.fit(train, val)
    torch.manual_seed(1234)  # disturb both global RNGs: resume must restore them
    random.seed(1234)
    resumed = mixup_kd(seed=99)
    result = Trainer(resumed, _cfg(epochs=4), checkpoint_dir=tmp_path).fit(train, val,
                                                                         resume_from=tmp_path / "last.pt")
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert [h["train/loss"] for h in result.history] == [h["train/loss"] for h in full.history]
    assert [h["val/acc"] for h in result.history] == [h["val/acc"] for h in full.history]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class Poisoned(torch.nn.Module):
    """An MLP that starts returning NaN after ``after`` training forwards."""

    def __init__(self, after: int, classes: int = 4):
        super().__init__()
        self.net, self.calls, self.after = create("mlp", classes, (1, 12, 12), width=16), 0, after

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tiny_data, tiny_teacher, tmp_path):
    train, val = tiny_data
    d = create_distiller("kd", tiny_teacher, Poisoned(after=8), (1, 12, 12))
    with pytest.raises(NonFiniteLossError, match=r"^student training: non-finite loss at epoch 2") as err:
        Trainer(d, _cfg(epochs=3), checkpoint_dir=tmp_path).fit(train, val)
    message = str(err.value)
    assert "non-finite terms ce=nan, kd=nan" in message
    assert "check the data for NaN/inf" in message and "method.params (e.g. temperature), optim.lr" in message
    assert message.endswith(f"the last good checkpoint is kept ({tmp_path / 'last.pt'})") and len(message) < 500
    state = load_state(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupted_checkpoint_is_refused_without_changes(tiny_data, tiny_teacher, tmp_path, damage):
    train, val = tiny_data
    Trainer(_kd(tiny_teacher), _cfg(epochs=1), checkpoint_dir=tmp_path).fit(train, val)
    path = tmp_path / "last.pt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    else:
        path.unlink()
    before = path.read_bytes() if path.exists() else None
    d = _kd(tiny_teacher)
    weights = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(CheckpointError, match="corrupted|does not exist"):
        Trainer(d, _cfg(epochs=2), checkpoint_dir=tmp_path).fit(train, val, resume_from=path)
    assert (path.read_bytes() if path.exists() else None) == before
    assert all(torch.equal(weights[k], v) for k, v in d.state_dict().items())


def test_teacher_cache_changes_nothing_but_cost(tiny_data, tiny_teacher):
    train, val = tiny_data
    cached = Trainer(_kd(tiny_teacher), _cfg(cache_teacher=True)).fit(train, val)
    uncached = Trainer(_kd(tiny_teacher), _cfg(cache_teacher=False)).fit(train, val)
    for a, b in zip(cached.history, uncached.history, strict=True):
        assert a["train/kd"] == pytest.approx(b["train/kd"], rel=1e-5)
        assert a["val/acc"] == b["val/acc"]


def test_teacher_cache_is_skipped_when_over_its_memory_limit(tiny_data, tiny_teacher):
    train, val = tiny_data
    d = create_distiller("fitnets", tiny_teacher, create("convnet", 4, (1, 12, 12), width=4, depth=2),
                         (1, 12, 12))
    result = Trainer(d, _cfg(epochs=1, cache_limit_mb=1e-4)).fit(train, val)
    assert any("teacher cache off" in n for n in result.notes)


def test_grad_clip_bounds_the_update(tiny_data, tiny_teacher):
    train, val = tiny_data
    d = _kd(tiny_teacher)
    before = [p.detach().clone() for p in d.student.parameters()]
    Trainer(d, _cfg(epochs=1, optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, grad_clip=1e-3,
                    batch_size=192)).fit(train, val)
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(d.student.parameters(), before, strict=False)))
    assert step <= 1e-3 * 1.0001


def test_same_seed_same_numbers(tiny_data, tiny_teacher):
    train, val = tiny_data
    a = Trainer(_kd(tiny_teacher), _cfg(epochs=2, seed=3)).fit(train, val)
    b = Trainer(_kd(tiny_teacher), _cfg(epochs=2, seed=3)).fit(train, val)
    assert [h["train/loss"] for h in a.history] == [h["train/loss"] for h in b.history]


def test_config_checks_optimisation_settings_against_the_declaration():
    from kdlab.errors import ConfigError
    from kdlab.runs.spec import OptimSpec

    with pytest.raises(ConfigError, match=r"lr: 0.0 is outside \(0.0, 10.0\]") as err:
        TrainConfig(lr=0)
    assert err.value.issues[0].where == "lr"
    with pytest.raises(ConfigError, match="optimizer") as err:
        TrainConfig(optimizer="lbfgs")
    assert err.value.issues[0].choices == ("sgd", "adam", "adamw")
    assert TrainConfig(epochs=2.0).epochs == 2 and TrainConfig(grad_clip=None).grad_clip is None
    cfg = TrainConfig.from_optim(OptimSpec(name="adam", lr=0.01, grad_clip=1.0), seed=3)
    assert (cfg.optimizer, cfg.lr, cfg.grad_clip, cfg.seed, cfg.epochs) == ("adam", 0.01, 1.0, 3, 10)
    assert TrainConfig.from_optim({"name": "adamw", "epochs": 2}).optimizer == "adamw"


def test_nan_loss_says_teacher_training_and_claims_no_checkpoint_that_is_not_there(tiny_data, tmp_path):
    """Nothing on disk yet (no checkpoint folder, or one without last.pt): the message must not promise one."""
    train, val = tiny_data
    for folder in (None, tmp_path / "empty"):
        d = create_distiller("vanilla", None, Poisoned(after=2), (1, 12, 12))
        with pytest.raises(NonFiniteLossError) as err:
            Trainer(d, _cfg(epochs=2), checkpoint_dir=folder, role="teacher").fit(train, val)
        message = str(err.value)
        assert message.startswith("teacher training: non-finite loss at epoch 1, step 2: non-finite terms ce=nan;")
        assert "teacher.optim.lr" in message and "method.params" not in message
        assert message.endswith("no checkpoint was written yet") and "kept" not in message
        assert len(message) < 500


def test_fit_refuses_a_model_with_fewer_outputs_than_the_data_has_classes(tiny_data, tiny_teacher):
    """Up front, before any step: a 3-output student on 4-class data would end in torch's "Target 3 is out of
    bounds"; the val split and the teacher are checked too."""
    from kdlab.data import ArrayDataset

    train, val = tiny_data
    narrow = create_distiller("vanilla", None, create("mlp", 3, (1, 12, 12), width=8), (1, 12, 12))
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(ShapeError, match=r"the student model has 3 outputs but the train data 'blobs' has 4 "
                                         r"classes \(largest label 3\): build the student for 4 classes, e\.g\. "
                                         r"kdlab\.models\.create\(name, num_classes=4"):
        Trainer(narrow, _cfg(epochs=1)).fit(train, val)
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items())  # no step was taken

    three = ArrayDataset(train.x[train.y < 3], train.y[train.y < 3], "three", ["a", "b", "c"])
    with pytest.raises(ShapeError, match=r"student model has 3 outputs but the val data 'blobs' has 4 classes"):
        Trainer(narrow, _cfg(epochs=1)).fit(three, val)
    Trainer(narrow, _cfg(epochs=1)).fit(three, ArrayDataset(val.x[val.y < 3], val.y[val.y < 3], "v3", ["a", "b", "c"]))

    d = _kd(tiny_teacher)
    d.teacher = create("mlp", 3, (1, 12, 12), width=8)  # swapped after the distiller checked the pair
    with pytest.raises(ShapeError, match=r"the teacher model has 3 outputs but the train data 'blobs' has 4"):
        Trainer(d, _cfg(epochs=1)).fit(train, val)
