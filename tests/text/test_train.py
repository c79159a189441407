"""train_lm on a tiny corpus: the loss falls, KD pulls the student towards the teacher, resume equals a straight
run, non-finite losses stop the run, and each mode's telemetry (TAID's t, DDK's mixture, on-policy batches, ALM's
cross-tokenizer terms) shows up in on_step; masked_ce against its definition."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from kdlab.errors import NonFiniteLossError
from kdlab.text.blocks import make_blocks
from kdlab.text.corpus import load_corpus
from kdlab.text.losses import create_lm_method
from kdlab.text.metrics import evaluate_lm
from kdlab.text.models import create_lm
from kdlab.text.tokenize import train_tokenizer
from kdlab.text.train import ALMData, LMTrainConfig, masked_ce, train_lm

L = 32


@pytest.fixture(scope="module")
def data():
    corpus = load_corpus("stdlib", max_domains=2, max_bytes=200_000)
    tok = train_tokenizer(corpus, 300, cache=False)
    splits = corpus.split(val=0.1, test=0.1, seed=0)
    train = make_blocks(splits.train, tok, L, max_bytes_per_domain=40_000, domains=corpus.domains())
    val = make_blocks(splits.test, tok, L, max_bytes_per_domain=3_000, domains=corpus.domains())
    assert all(n > 0 for n in val.counts().values())
    return corpus, tok, train, val


def _lm(tok, seed=0, width=32, vocab=None):
    torch.manual_seed(seed)
    return create_lm("gpt2", vocab or tok.vocab_size, tok.eos_id, layers=2, width=width, heads=4, context=L + 1)


def _cfg(**kw):
    return LMTrainConfig(**{"steps": 20, "batch_size": 8, "lr": 3e-3, "warmup": 3, **kw})


@pytest.fixture(scope="module")
def teacher(data):
    _, tok, train, _ = data
    t = _lm(tok, seed=11, width=48)
    train_lm(t, train, _cfg(steps=60, lr=5e-3, seed=11))
    return t.eval()


def test_masked_ce_is_the_mean_over_masked_positions():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    want = sum(-F.log_softmax(logits[i, j], -1)[targets[i, j]] for i in range(2) for j in range(5) if mask[i, j]) / 4
    assert float(masked_ce(logits, targets, mask)) == pytest.approx(float(want), rel=1e-6)
    assert float(masked_ce(logits, targets, torch.zeros_like(mask))) == 0.0


def test_loss_decreases(data):
    _, tok, train, val = data
    student = _lm(tok)
    before = evaluate_lm(student, val).set_index("domain").loc["all", "bpb"]
    seen: list[dict] = []
    state = train_lm(student, train, _cfg(steps=40), on_step=lambda s, v: seen.append(v))
    assert state.step == 40 and len(seen) == 40
    ce = [v["loss/ce"] for v in seen]
    assert sum(ce[-5:]) / 5 < sum(ce[:5]) / 5 - 0.5
    assert all(v["loss/total"] == pytest.approx(v["loss/ce"]) for v in seen)  # no KD: the total is the ce
    after = evaluate_lm(student, val).set_index("domain").loc["all", "bpb"]
    assert after < before - 0.3


def test_kd_student_is_closer_to_the_teacher(data, teacher):
    _, tok, train, val = data
    kls = {}
    for name in ("none", "forward_kl"):
        student = _lm(tok, seed=1)
        seen: list[dict] = []
        method = create_lm_method(name, {})
        train_lm(student, train, _cfg(steps=30, ce_weight=0.0 if name == "forward_kl" else 1.0), teacher=teacher,
                 method=method, on_step=lambda s, v, seen=seen: seen.append(v))
        kls[name] = float(evaluate_lm(student, val, teacher=teacher).set_index("domain").loc["all", "kl"])
        if name == "forward_kl":
            assert "loss/kd" in seen[0] and "loss/ce" not in seen[0]
            assert seen[-1]["loss/kd"] < seen[0]["loss/kd"]
    assert kls["forward_kl"] < 0.9 * kls["none"], kls


def test_resume_equals_a_straight_run(data, teacher):
    _, tok, train, _ = data
    cfg = _cfg(steps=20)
    straight = _lm(tok, seed=2)
    straight_method = create_lm_method("taid", {"alpha": 0.05})
    train_lm(straight, train, cfg, teacher=teacher, method=straight_method)

    first = _lm(tok, seed=2)
    saved = {}

    def keep(state):
        if state.step == 10:
            saved["state"] = copy.deepcopy(state)  # the optimizer's state_dict holds live tensors
            saved["model"] = copy.deepcopy(first.state_dict())

    train_lm(first, train, cfg, teacher=teacher, method=create_lm_method("taid", {"alpha": 0.05}),
             on_checkpoint=keep, checkpoint_every=10)
    resumed = _lm(tok, seed=99)
    resumed.load_state_dict(saved["model"])
    method = create_lm_method("taid", {"alpha": 0.05})
    state = train_lm(resumed, train, cfg, teacher=teacher, method=method, state=saved["state"])
    assert state.step == 20
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # CPU, same seed: bit for bit
    assert method.info()["taid_t"] == straight_method.info()["taid_t"] != 0.4  # TAID's t resumed too


def test_non_finite_loss_stops_the_run(data):
    _, tok, train, _ = data
    student = _lm(tok)
    with torch.no_grad():
        student.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_lm(student, train, _cfg(steps=3))
    with pytest.raises(NonFiniteLossError, match="lower lr"):
        train_lm(_lm(tok), train, _cfg(steps=30, lr=1e6, warmup=1, grad_clip=0.0))


def test_taid_t_is_reported(data, teacher):
    _, tok, train, _ = data
    seen: list[dict] = []
    method = create_lm_method("taid", {"t_start": 0.4, "t_end": 1.0, "alpha": 0.05})
    train_lm(_lm(tok), train, _cfg(steps=8), teacher=teacher, method=method, on_step=lambda s, v: seen.append(v))
    ts = [v["method/taid_t"] for v in seen]
    assert all(0.4 <= t <= 1.0 for t in ts) and ts == sorted(ts) and ts[-1] > 0.4
    assert all("loss/kd" in v and "loss/ce" in v for v in seen)


def test_ddk_mixture_is_reported(data, teacher):
    _, tok, train, val = data
    seen: dict[int, dict] = {}
    cfg = _cfg(steps=12, mixture="ddk", ddk_every=5, ddk_alpha=0.5)
    state = train_lm(_lm(tok), train, cfg, teacher=teacher, method=create_lm_method("ddk", {}), val_blocks=val,
                     on_step=lambda s, v: seen.__setitem__(s, v))
    keys = [f"mixture/{d}" for d in train.domains]
    for step in (5, 10):
        w = [seen[step][k] for k in keys]
        assert sum(w) == pytest.approx(1.0) and min(w) >= 0.25 - 1e-9 and w != [0.5, 0.5]
    assert not any(k in seen[4] for k in keys)
    assert state.ddk is not None and len(state.ddk["history"]) == 3


def test_on_policy_batches(data, teacher):
    _, tok, train, _ = data
    seen: list[dict] = []
    method = create_lm_method("on_policy", {"lmbda": 1.0})
    rows: list[int] = []
    real_terms = method.terms
    method.terms = lambda s, t: (rows.append(s.shape[0]), real_terms(s, t))[1]  # positions the loss sees
    train_lm(_lm(tok), train, _cfg(steps=3, lmbda=1.0, prompt_len=10), teacher=teacher, method=method,
             on_step=lambda s, v: seen.append(v))
    assert all(v["on_policy"] == 1.0 and "loss/ce" not in v and "loss/kd" in v for v in seen)
    # only the student's own tokens carry the loss: the predictions of positions prompt_len .. L, per row
    assert rows == [8 * (L - 10 + 1)] * 3
    del method.terms
    mixed: list[dict] = []
    train_lm(_lm(tok), train, _cfg(steps=12, lmbda=0.5), teacher=teacher, method=method,
             on_step=lambda s, v: mixed.append(v))
    flags = {v["on_policy"] for v in mixed}
    assert flags == {0.0, 1.0}
    assert all(("loss/ce" in v) == (v["on_policy"] == 0.0) for v in mixed)


def test_alm_cross_tokenizer_terms(data):
    corpus, tok, train, _ = data
    t_tok = train_tokenizer(corpus, 400, cache=False)
    t_model = _lm(t_tok, seed=5, vocab=t_tok.vocab_size).eval()
    seen: list[dict] = []
    alm = ALMData(t_tok, tok, L)
    train_lm(_lm(tok), train, _cfg(steps=3), teacher=t_model, method=create_lm_method("alm", {}), alm=alm,
             on_step=lambda s, v: seen.append(v))
    for v in seen:
        assert {"loss/alm", "loss/ce"} <= set(v) and v["loss/alm"] >= 0 and v["loss/ce"] > 0
        assert v["loss/total"] == pytest.approx(v["loss/alm"] + v["loss/ce"], rel=1e-5)
