"""The trainer's reported numbers against a hand computation from what each step actually did (issue #19):
per-term and total loss averaged over the epoch's steps, train/acc over its samples, throughput, the
step events' step and fractional epoch, the progress a method sees, the best/last bookkeeping and the
resume of a finished run. Tiny models and data: these run once per mutant."""
from __future__ import annotations

import math
import time

import pytest
import torch

import kdlab.distill.trainer as trainer_mod
from kdlab.distill import create_distiller
from kdlab.distill.evaluate import Evaluation
from kdlab.distill.trainer import Callback, TrainConfig, Trainer
from kdlab.models import create
from kdlab.models.checkpoints import load_state

from .conftest import blobs

# a tiny fit takes well under a second: a loop that never reaches config.epochs fails here rather than hanging
pytestmark = pytest.mark.timeout(10)


def _recording_vanilla(steps: list[dict]):
    """A vanilla distiller with a second term; every forward_train call is recorded (before its update)."""
    torch.manual_seed(0)
    d = create_distiller("vanilla", None, create("mlp", 4, (1, 12, 12), width=16), (1, 12, 12))
    inner = d.forward_train

    def forward_train(x, y, teacher_out=None):
        logits, terms = inner(x, y, teacher_out)
        terms = {**terms, "aux": 0.1 * logits.pow(2).mean()}
        steps.append({"correct": int((logits.detach().argmax(1) == y).sum()), "n": len(y),
                      "terms": {k: float(v.detach()) for k, v in terms.items()}, "progress": d.progress})
        return logits, terms

    d.forward_train = forward_train
    return d


class _Rec(Callback):
    def __init__(self):
        self.steps, self.epochs = [], []

    def on_step_end(self, trainer, metrics):
        self.steps.append(dict(metrics))

    def on_epoch_end(self, trainer, metrics):
        self.epochs.append(dict(metrics))


@pytest.mark.parametrize(("n", "batch_size", "log_every"), [(100, 32, 2), (40, 64, 1), (6, 1, 4), (1, 4, 1)])
def test_epoch_metrics_are_the_hand_computed_step_averages(n, batch_size, log_every):
    train, val = blobs(n, 0), blobs(16, 1)
    steps, rec = [], _Rec()
    epochs = 2
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, log_every=log_every)
    t0 = time.perf_counter()
    result = Trainer(_recording_vanilla(steps), cfg, [rec]).fit(train, val)
    wall = time.perf_counter() - t0
    per_epoch = math.ceil(n / batch_size)
    total = epochs * per_epoch
    assert len(steps) == total and len(result.history) == epochs
    # the progress a method sees before step s (0-based) is s / total steps
    assert [s["progress"] for s in steps] == pytest.approx([i / total for i in range(total)])
    for e, metrics in enumerate(result.history):
        chunk = steps[e * per_epoch:(e + 1) * per_epoch]
        assert sum(s["n"] for s in chunk) == n
        for key in ("ce", "aux"):
            assert metrics[f"train/{key}"] == pytest.approx(sum(s["terms"][key] for s in chunk) / per_epoch,
                                                            rel=1e-5)
        assert metrics["train/loss"] == pytest.approx(
            sum(sum(s["terms"].values()) for s in chunk) / per_epoch, rel=1e-5)
        assert metrics["train/acc"] == pytest.approx(sum(s["correct"] for s in chunk) / n)
        assert 0 < metrics["epoch_time"] <= wall
        assert metrics["throughput"] == pytest.approx(n / metrics["epoch_time"], rel=1e-6)
        assert metrics["epoch"] == e + 1
    assert rec.epochs == result.history
    # step events: every log_every-th global step, with the epoch as a fraction of samples seen
    want = []
    for g in range(1, total + 1):
        if g % log_every == 0:
            e, k = divmod(g - 1, per_epoch)
            seen = sum(s["n"] for s in steps[e * per_epoch:e * per_epoch + k + 1])
            want.append((g, e + seen / n, sum(steps[g - 1]["terms"].values())))
    got = [(s["step"], s["epoch"], s["train/loss"]) for s in rec.steps]
    assert [w[0] for w in want] == [g[0] for g in got]
    assert [w[1] for w in want] == pytest.approx([g[1] for g in got])
    assert [w[2] for w in want] == pytest.approx([g[2] for g in got], rel=1e-5)


def test_train_acc_is_the_share_of_correct_predictions():
    """A student that always predicts class 0: train/acc is exactly the share of class-0 samples."""
    train, val = blobs(40, 0), blobs(8, 1)  # classes 0..3 in turn: a quarter are class 0
    steps = []
    d = _recording_vanilla(steps)
    with torch.no_grad():
        last = [m for m in d.student.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-6, log_every=0)
    result = Trainer(d, cfg).fit(train, val)
    assert result.history[0]["train/acc"] == pytest.approx(0.25)
    one = Trainer(d, cfg).fit(blobs(1, 0), val)  # a single class-0 sample: accuracy 1
    assert one.history[0]["train/acc"] == 1.0


def _scripted_eval(monkeypatch, accs):
    it = iter(accs)

    def evaluate(*args, **kw):
        return Evaluation(correct=next(it) * 8, loss_sum=1.0, agree=0.0, n=8)

    monkeypatch.setattr(trainer_mod, "evaluate", evaluate)


def test_best_is_the_first_epoch_with_the_highest_val_acc_and_last_holds_the_final_state(monkeypatch, tmp_path):
    _scripted_eval(monkeypatch, [0.5, 0.75, 0.75, 0.25])
    train, val = blobs(24, 0), blobs(8, 1)
    steps = []
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05, log_every=0)
    t = Trainer(_recording_vanilla(steps), cfg, checkpoint_dir=tmp_path)
    result = t.fit(train, val)
    assert [h["val/acc"] for h in result.history] == [0.5, 0.75, 0.75, 0.25]
    assert result.best["epoch"] == 2 and result.best["val/acc"] == 0.75
    assert result.last == result.history[-1] and result.last["epoch"] == 4
    best, last = load_state(tmp_path / "best.pt"), load_state(tmp_path / "last.pt")
    assert result.best_checkpoint == str(tmp_path / "best.pt") and result.checkpoint == str(tmp_path / "last.pt")
    assert best["epoch"] == 2 and best["global_step"] == 2 * 3
    assert last["epoch"] == 4 and last["global_step"] == 4 * 3 and len(last["history"]) == 4
    assert last["best"]["epoch"] == 2

    # resuming a finished run trains nothing and reports the saved history, best and last epoch
    steps.clear()
    again = Trainer(_recording_vanilla(steps), cfg, checkpoint_dir=tmp_path / "again")
    res2 = again.fit(train, val, resume_from=tmp_path / "last.pt")
    assert steps == []
    assert [h["epoch"] for h in res2.history] == [1, 2, 3, 4]
    assert res2.last == res2.history[-1] and res2.last["epoch"] == 4
    assert res2.best["epoch"] == 2
    assert again.epoch == 4 and again.global_step == 12
