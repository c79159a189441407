"""Evaluation: scoring precomputed logits equals running the model; sharded passes add up."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlab.data import BatchLoader
from kdlab.distill.evaluate import evaluate, score
from kdlab.models import create
from kdlab.models.inference import predict

from .conftest import blobs


def test_score_of_predicted_logits_equals_evaluate_and_hand_values():
    data = blobs(70, 3)
    torch.manual_seed(0)
    model, ref = create("mlp", 4, (1, 12, 12), width=8), create("mlp", 4, (1, 12, 12), width=8)
    logits, ref_logits = predict(model, data, batch_size=16), predict(ref, data, batch_size=16)
    by_score = score(logits, data.y, ref_logits)
    by_eval = evaluate(model, BatchLoader(data, 16), "cpu", ref_logits)
    assert by_score.acc == pytest.approx(by_eval.acc) and by_score.agreement == pytest.approx(by_eval.agreement)
    assert by_score.loss == pytest.approx(by_eval.loss, rel=1e-5)
    assert by_score.acc == pytest.approx(float((logits.argmax(1) == data.y).float().mean()))
    assert by_score.loss == pytest.approx(float(F.cross_entropy(logits, data.y)), rel=1e-6)
    assert by_score.agreement == pytest.approx(float((logits.argmax(1) == ref_logits.argmax(1)).float().mean()))


def test_sharded_evaluations_sum_to_the_whole():
    data = blobs(45, 4)
    model = create("mlp", 4, (1, 12, 12), width=8)
    whole = evaluate(model, BatchLoader(data, 8), "cpu")
    parts = [evaluate(model, BatchLoader(data, 8, shard=(r, 3)), "cpu") for r in range(3)]
    assert sum(p.n for p in parts) == whole.n == 45
    assert sum(p.correct for p in parts) == whole.correct
