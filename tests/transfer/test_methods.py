"""DistillNearest / DistillWeighted / FixMatch losses against their formulas; zoo: models in a spec run."""
from __future__ import annotations

import pytest
import torch

from kdlab import create, create_distiller
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.unlabelled import strong_augment, weak_augment
from kdlab.errors import ConfigError
from kdlab.runs.experiment import run_experiment
from kdlab.runs.spec import load_spec
from kdlab.transfer import SourceEnsemble, fit_teachers, run_method


@pytest.fixture(scope="module")
def teachers(zoo, target):
    return fit_teachers(zoo, target, ["mnist", "mnist_parity"])


def _student(target):
    torch.manual_seed(0)
    return create("convnet", 10, target.labelled.in_shape, width=4, depth=2, norm="batchnorm")


def test_fitted_heads_predict_the_target(teachers, target):
    from kdlab.transfer.teachers import accuracy

    assert accuracy(teachers["mnist"], target.labelled) > 0.9  # the head fits its 50 labels
    assert accuracy(teachers["mnist"], target.test) > 0.3


def test_weighted_kd_is_weighted_sum_of_per_teacher_kl(teachers, target):
    ens = SourceEnsemble([teachers["mnist"], teachers["mnist_parity"]], [3.0, 1.0], ["mnist", "mnist_parity"])
    d = create_distiller("distill_weighted", ens, _student(target), target.labelled.in_shape, temperature=3.0,
                         unlabelled_ratio=0)
    x, y = target.labelled.x[:16], target.labelled.y[:16]
    logits, terms = d.forward_train(x, y)
    with torch.no_grad():
        t0, t1 = teachers["mnist"](x), teachers["mnist_parity"](x)
    want = 0.75 * kl_div(logits, t0, 3.0) + 0.25 * kl_div(logits, t1, 3.0)
    assert terms["kd"].item() == pytest.approx(want.item(), rel=1e-5)
    mix = torch.log(0.75 * t0.softmax(1) + 0.25 * t1.softmax(1))
    assert torch.allclose(d.teacher_forward(x).logits, mix, atol=1e-5)  # the declared combined teacher
    u = create_distiller("distill_weighted", ens, _student(target), target.labelled.in_shape, weighting="uniform")
    assert torch.allclose(u.teacher_weights(), torch.tensor([0.5, 0.5]))


def test_weighted_per_teacher_kl_has_the_gradient_of_kl_to_the_tempered_mixture():
    """sum_k w_k KL(p_k || q) = KL(sum_k w_k p_k || q) + a constant in the student: DistillWeighted's sum of
    per-teacher terms and distilling the weighted mixture of the teachers' softened outputs train the same way."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 8, 5, generator=g) * 3
    w, temp = torch.tensor([0.6, 0.3, 0.1]), 2.0
    s1 = torch.randn(8, 5, generator=g, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    sum(w[k] * kl_div(s1, t[k], temp) for k in range(3)).backward()
    mix = (w[:, None, None] * (t / temp).softmax(2)).sum(0)  # the mixture of softened teachers
    (temp**2 * torch.nn.functional.kl_div((s2 / temp).log_softmax(1), mix, reduction="batchmean")).backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-7)


def test_unlabelled_images_enter_the_kd_term(teachers, target):
    d = create_distiller("distill_nearest", teachers["mnist"], _student(target), target.labelled.in_shape,
                         unlabelled="digits", unlabelled_params={"size": 28}, unlabelled_ratio=2)
    assert d.pool_size == 1257
    x, y = target.labelled.x[:8], target.labelled.y[:8]
    torch.manual_seed(1)
    _, terms = d.forward_train(x, y)
    torch.manual_seed(1)
    idx = torch.randint(1257, (16,))
    xs = torch.cat([x, d._pool[idx]])
    with torch.no_grad():
        want = kl_div(d.student(xs), teachers["mnist"](xs), 2.0)
    assert terms["kd"].item() == pytest.approx(want.item(), rel=1e-4)
    with pytest.raises(ConfigError, match="shape"):
        d.use_unlabelled(torch.zeros(3, 1, 8, 8))


def test_fixmatch_masks_unconfident_pseudo_labels(target):
    d = create_distiller("fixmatch", None, _student(target), target.labelled.in_shape, threshold=1.0,
                         unlabelled_ratio=2)
    d.use_unlabelled(target.unlabelled)
    _, terms = d.forward_train(target.labelled.x[:8], target.labelled.y[:8])
    assert terms["pseudo"].item() == 0.0  # nothing is 100% confident at initialisation
    low = create_distiller("fixmatch", None, _student(target), target.labelled.in_shape, threshold=0.0)
    low.use_unlabelled(target.unlabelled)
    assert low.forward_train(target.labelled.x[:8], target.labelled.y[:8])[1]["pseudo"].item() > 0


def test_augmentations_keep_range_and_change_images(target):
    x = target.labelled.x[:32]
    torch.manual_seed(0)
    for aug in (weak_augment, strong_augment):
        out = aug(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert (out - x).abs().mean() > 0.01


def test_harness_distill_nearest_beats_chance(zoo, target, teachers):
    import pandas as pd

    scores = pd.DataFrame({"linear_probe": [0.9, 0.5]}, index=["mnist", "mnist_parity"])
    r = run_method("nearest", zoo, target, scores, epochs=3, teachers=teachers,
                   student_params={"width": 4, "depth": 2, "norm": "batchnorm"})
    assert r["sources"] == ["mnist"] and r["test_acc"] > 0.2
    with pytest.raises(ConfigError, match="scores"):
        run_method("weighted", zoo, target)


def test_zoo_teacher_in_an_experiment_spec(zoo, target, teachers, tmp_path):
    ens = SourceEnsemble([teachers["mnist"], teachers["mnist_parity"]], [0.8, 0.2])
    ckpt = tmp_path / "teacher.pt"
    torch.save({"model": ens.state_dict()}, ckpt)
    spec = load_spec({
        "data": {"name": "digits", "params": {"size": 28, "n_train": 50}},
        "teacher": {"name": "zoo:mnist+mnist_parity", "params": {"root": str(zoo.root), "weights": [0.8, 0.2]},
                    "checkpoint": str(ckpt)},
        "student": {"name": "convnet", "params": {"width": 4, "depth": 2, "norm": "batchnorm"}},
        "method": {"name": "distill_weighted", "params": {"unlabelled": "digits",
                                                          "unlabelled_params": {"size": 28}}},
        "optim": {"epochs": 1, "batch_size": 16}, "device": "cpu"})
    res = run_experiment(spec, tmp_path / "run")
    from kdlab.transfer.teachers import accuracy

    assert res.teacher["test/acc"] == pytest.approx(accuracy(ens, target.test))  # the fitted heads were loaded
    assert "train/kd" in res.history[-1]
