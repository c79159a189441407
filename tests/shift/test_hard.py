"""HARD (hard augmentations for robust distillation): identity start, bounds, the adversarial direction of the
augmenter and of the student, the teacher-consistency term, bad inputs, and a small end-to-end run."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdlab.data import load
from kdlab.errors import ConfigError
from kdlab.models import create
from kdlab.shift.hard import (
    AugBounds,
    Augmenter,
    apply_augmentation,
    augmentation_params,
    augmenter_step,
    hard_terms,
    student_loss,
    study_hard,
    train_hard,
)

torch.set_num_threads(1)


def _net(seed: int, width: int) -> nn.Module:
    """A small fixed ConvNet with sharpened logits (random nets are near-uniform, so every KL would be tiny)."""
    torch.manual_seed(seed)
    net = create("convnet", 10, (1, 16, 16), width=width, depth=2, norm="none").eval()
    with torch.no_grad():
        net.classifier.weight.mul_(20.0)
    return net


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(n, 1, 16, 16)
    x[:, :, 4:12, 6:10] = torch.rand(n, 1, 8, 4, generator=g)  # bright blobs on black, like digits
    return x, torch.randn(n, 8, generator=g)


def test_augmenter_starts_at_identity() -> None:
    torch.manual_seed(0)
    aug = Augmenter(bounds=AugBounds(0.5, 1.0, 0.5))
    x, z = _batch()
    torch.testing.assert_close(aug(x, z), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(apply_augmentation(x, torch.zeros(len(x), 8), AugBounds()), x, atol=1e-5, rtol=0)


def test_augmentations_stay_within_bounds() -> None:
    bounds = AugBounds(max_affine=0.2, max_contrast=0.3, max_brightness=0.1)
    torch.manual_seed(0)
    aug = Augmenter(bounds=bounds)
    with torch.no_grad():
        for p in aug.head.parameters():
            p.normal_(0, 50.0)  # saturate every parameter
    x, z = _batch()
    with torch.no_grad():
        u = aug.params(x, z)
    assert float(u.abs().max()) <= 1.0
    theta, contrast, brightness = augmentation_params(u, bounds)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert float((theta - eye).abs().max()) <= 0.2 + 1e-6
    assert float((contrast - 1).abs().max()) <= 0.3 + 1e-6 and float(brightness.abs().max()) <= 0.1 + 1e-6
    assert float((theta - eye).abs().max()) > 0.15  # the extremes are reachable
    with torch.no_grad():
        out = aug(x, z)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    for field, value in (("max_affine", 1.5), ("max_contrast", -0.1), ("max_brightness", 2.0)):
        with pytest.raises(ConfigError, match=f"bounds.{field}"):
            AugBounds(**{field: value})


def _run_augmenter(consistency: float, steps: int = 8) -> tuple[dict[str, float], dict[str, float]]:
    teacher, student = _net(1, 8), _net(2, 4)
    torch.manual_seed(0)
    aug = Augmenter(bounds=AugBounds(0.5, 1.0, 0.3))
    opt = torch.optim.Adam(aug.parameters(), lr=0.05)
    x, z = _batch()
    with torch.no_grad():
        before = {k: float(v) for k, v in hard_terms(teacher, student, x, aug(x, z)).items()}
    for _ in range(steps):
        augmenter_step(aug, opt, teacher, student, x, z, consistency=consistency)
    with torch.no_grad():
        after = {k: float(v) for k, v in hard_terms(teacher, student, x, aug(x, z)).items()}
    return before, after


def test_augmenter_step_increases_disagreement_on_a_fixed_student() -> None:
    before, after = _run_augmenter(consistency=0.0)
    assert before["consistency"] == pytest.approx(0.0, abs=1e-6)  # identity start: teacher unchanged
    assert after["disagreement"] > 1.5 * before["disagreement"]


def test_teacher_consistency_term_restrains_the_augmenter() -> None:
    _, free = _run_augmenter(consistency=0.0)
    _, held = _run_augmenter(consistency=50.0)
    assert free["consistency"] > 0
    assert held["consistency"] < 0.5 * free["consistency"]


def test_student_step_decreases_kd_loss_on_augmented_images() -> None:
    teacher, student = _net(1, 8), _net(2, 4)
    x, _ = _batch()
    x_aug = apply_augmentation(x, torch.rand(len(x), 8, generator=torch.Generator().manual_seed(1)) * 2 - 1,
                               AugBounds())
    opt = torch.optim.SGD(student.parameters(), lr=0.05)
    loss = student_loss(teacher, student, x, x_aug)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert float(student_loss(teacher, student, x, x_aug)) < float(loss)
        assert float(hard_terms(teacher, student, x, x_aug)["disagreement"]) >= 0


def test_bad_inputs_are_refused() -> None:
    five = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    data = load("mnist5k", split="val").subset(torch.arange(64))
    with pytest.raises(ConfigError, match="teacher: gives 5 class logits"):
        train_hard("hard", five, data, steps=1)
    with pytest.raises(ConfigError, match="method"):
        train_hard("hardest", five, data, steps=1)
    with pytest.raises(ConfigError, match="consistency"):
        train_hard("hard", five, data, steps=1, consistency=-1.0)


def test_end_to_end_on_tiny_zoo(tiny_zoo) -> None:
    teacher = tiny_zoo.load("mnist")
    data = load("mnist5k", split="val").subset(torch.arange(128))
    student, aug = train_hard("hard", teacher, data, steps=3, batch_size=32)
    assert aug is not None and not student.training
    result = study_hard(tiny_zoo, seed=0, scale=0.02)
    json.dumps(result)
    assert result["study"] == "hard" and "hard_minus_kd_shifted_mean" in result["summary"]
    tests = {r["test set"] for r in result["table"]}
    assert tests == {"clean", "rotate 0.3", "blur 0.5", "noise 0.5", "invert", "edge"}
    assert {r["method"] for r in result["table"]} == {"teacher", "kd", "kd_random_aug", "hard"}
    acc = {(r["method"], r["test set"]): r["accuracy"] for r in result["table"]}
    shifted = {m: sum(acc[m, t] for t in tests - {"clean"}) / 5 for m in ("kd", "kd_random_aug", "hard")}
    assert result["shifted_mean"] == pytest.approx(shifted)
    assert result["summary"]["hard_minus_kd_shifted_mean"] == pytest.approx(shifted["hard"] - shifted["kd"])
    assert result["summary"]["hard_minus_kd_clean"] == pytest.approx(acc["hard", "clean"] - acc["kd", "clean"])
    from kdlab.transfer.teachers import accuracy

    assert acc["teacher", "clean"] == pytest.approx(accuracy(teacher, load("mnist5k", split="test")))


def test_parameters_map_to_the_declared_affine_contrast_and_brightness() -> None:
    b = AugBounds(max_affine=0.4, max_contrast=0.5, max_brightness=0.2)
    u = torch.tensor([[0.5, -1.0, 0.25, 0.0, 1.0, -0.5, 0.5, -1.0]])
    theta, contrast, brightness = augmentation_params(u, b)
    want = torch.tensor([[[1.2, -0.4, 0.1], [0.0, 1.4, -0.2]]])
    torch.testing.assert_close(theta, want)
    torch.testing.assert_close(contrast, torch.tensor([1.25]))
    torch.testing.assert_close(brightness, torch.tensor([-0.2]))


def test_intensity_part_scales_contrast_about_the_mean_then_shifts_brightness() -> None:
    b = AugBounds(max_affine=0.4, max_contrast=0.5, max_brightness=0.2)
    x = torch.full((1, 1, 8, 8), 0.3)
    x[..., 2:6, 2:6] = 0.6  # an image away from the clip at 0 and 1
    u = torch.zeros(1, 8)
    u[0, 6], u[0, 7] = 1.0, 0.5  # contrast 1.5, brightness +0.1; no warp
    mean = x.mean()
    torch.testing.assert_close(apply_augmentation(x, u, b), (1.5 * (x - mean) + mean + 0.1).clamp(0, 1))


def test_terms_are_the_declared_kls_and_the_defaults_are_t4_and_consistency_2() -> None:
    teacher, student = _net(0, 8), _net(1, 4)
    x, z = _batch()
    x_aug = apply_augmentation(x, torch.full((len(x), 8), 0.3), AugBounds())
    terms = hard_terms(teacher, student, x, x_aug)
    with torch.no_grad():
        t, s, t0 = teacher(x_aug), student(x_aug), teacher(x)
    p_t, log_p_t, log_p_s = (t / 4).softmax(1), (t / 4).log_softmax(1), (s / 4).log_softmax(1)
    torch.testing.assert_close(terms["disagreement"], 16 * (p_t * (log_p_t - log_p_s)).sum(1).mean())
    q0, log_q0, log_q = t0.softmax(1), t0.log_softmax(1), t.log_softmax(1)
    torch.testing.assert_close(terms["consistency"], (q0 * (log_q0 - log_q)).sum(1).mean())  # KL(clean || aug)
    # one augmenter step with the defaults is the step with consistency 2 and temperature 4
    steps = []
    for kw in ({}, {"consistency": 2.0, "temperature": 4.0}, {"consistency": 3.0, "temperature": 4.0}):
        torch.manual_seed(0)
        aug = Augmenter()
        with torch.no_grad():
            aug.head[-1].weight.normal_(0, 0.1)  # away from the identity start, where the consistency grad is 0
        opt = torch.optim.SGD(aug.parameters(), lr=0.1)
        augmenter_step(aug, opt, teacher, student, x, z, **kw)
        steps.append(torch.cat([p.detach().flatten() for p in aug.parameters()]))
    torch.testing.assert_close(steps[0], steps[1])
    assert not torch.allclose(steps[1], steps[2])  # the consistency weight moves the step
    torch.manual_seed(0)
    aug = Augmenter()
    with torch.no_grad():
        aug.head[-1].weight.normal_(0, 0.1)
    t2 = hard_terms(teacher, student, x, aug(x, z), 4.0)
    grads = torch.autograd.grad(-t2["disagreement"] + 2.0 * t2["consistency"], list(aug.parameters()))
    manual = torch.cat([(p - 0.1 * g).detach().flatten() for p, g in zip(aug.parameters(), grads, strict=True)])
    torch.testing.assert_close(steps[1], manual)  # SGD on -disagreement + 2 x consistency
