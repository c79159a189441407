"""Teacher outputs kept on disk by content: a second run loads them instead of running the teacher, trains to the
same numbers, and anything that changes the outputs (weights, images, tapped layers) changes the key."""
from __future__ import annotations

import torch

from kdlab.distill import create_distiller
from kdlab.distill.teacher_outputs import OutputFiles, output_key
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.models import create

from .conftest import blobs


def _fit(teacher, folder, method="kd"):
    torch.manual_seed(1)
    student = create("mlp", 4, (1, 12, 12), width=16)
    d = create_distiller(method, teacher, student, (1, 12, 12))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, log_every=0, teacher_outputs=str(folder) if folder else None)
    trainer = Trainer(d, cfg)
    result = trainer.fit(blobs(96, 0), blobs(32, 1))
    timing = ("throughput", "epoch_time")
    return [{k: v for k, v in h.items() if k not in timing} for h in result.history], trainer.teacher_logits(
        blobs(40, 2))


def _count_calls(model):
    """The batch size of every forward pass of ``model`` from now on."""
    calls = []
    model.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    return calls


def test_stored_outputs_give_the_same_training_without_teacher_passes(tiny_teacher, tmp_path):
    plain = _fit(tiny_teacher, None)
    calls = _count_calls(tiny_teacher)
    first = _fit(tiny_teacher, tmp_path)
    assert sum(calls) >= 96 + 32 + 40 and len(list(tmp_path.glob("*.pt"))) == 3  # train, val, extra: stored once
    n = len(calls)
    second = _fit(tiny_teacher, tmp_path)
    assert max(calls[n:]) <= 2  # only the one-sample shape probes ran: every output came from disk
    for a, b in ((plain, first), (first, second)):
        assert a[0] == b[0] and torch.equal(a[1], b[1])  # same history, same logits, bit for bit


def test_the_key_follows_weights_inputs_and_layers(tiny_teacher):
    x = blobs(16, 0).x
    key = output_key(tiny_teacher, x)
    assert key == output_key(tiny_teacher, x.clone())
    assert key != output_key(tiny_teacher, x[:15])
    assert key != output_key(tiny_teacher, x, ["features.0"])
    other = create("convnet", 4, (1, 12, 12), width=8, depth=2, norm="batchnorm")
    other.load_state_dict(tiny_teacher.state_dict())
    assert output_key(other, x) == key
    with torch.no_grad():
        next(other.parameters())[0, 0, 0, 0] += 1e-6
    assert output_key(other, x) != key


def test_a_damaged_file_is_recomputed(tiny_teacher, tmp_path):
    files = OutputFiles(tmp_path)
    x = blobs(8, 0).x
    from kdlab.distill.base import TeacherOutput

    made = files.memo(tiny_teacher, x, (), lambda: TeacherOutput(tiny_teacher(x).detach()))
    path = next(tmp_path.glob("*.pt"))
    path.write_bytes(b"broken")
    again = files.memo(tiny_teacher, x, (), lambda: TeacherOutput(tiny_teacher(x).detach()))
    assert torch.equal(made.logits, again.logits) and torch.load(path, weights_only=True)["logits"].shape == (8, 4)
    assert OutputFiles(tmp_path, limit_mb=0.0).put("big", made) is None and not (tmp_path / "big.pt").exists()


def test_the_size_limit_counts_logits_and_features(tmp_path):
    from kdlab.distill.base import TeacherOutput

    out = TeacherOutput(torch.zeros(1024, 128), {"f": torch.zeros(1024, 128)})  # 0.5 MiB + 0.5 MiB of float32
    OutputFiles(tmp_path, limit_mb=0.999).put("over", out)
    OutputFiles(tmp_path, limit_mb=1.0).put("at", out)
    assert not (tmp_path / "over.pt").exists() and (tmp_path / "at.pt").exists()
    got = OutputFiles(tmp_path).get("at")
    assert torch.equal(got.logits, out.logits) and torch.equal(got.features["f"], out.features["f"])


def test_inputs_that_require_grad_and_files_holding_more_than_tensors(tiny_teacher, tmp_path):
    from kdlab.distill.base import TeacherOutput

    x = blobs(8, 0).x
    assert output_key(tiny_teacher, x.clone().requires_grad_()) == output_key(tiny_teacher, x)
    key = output_key(tiny_teacher, x)
    torch.save({"logits": torch.ones(8, 4), "features": {}, "extra": Exception("code")}, tmp_path / f"{key}.pt")
    files = OutputFiles(tmp_path)
    assert files.get(key) is None  # weights_only: a file that needs arbitrary unpickling is not trusted
    made = files.memo(tiny_teacher, x, (), lambda: TeacherOutput(torch.zeros(8, 4)))
    assert torch.equal(made.logits, torch.zeros(8, 4)) and torch.equal(files.get(key).logits, made.logits)
