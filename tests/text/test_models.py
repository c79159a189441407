"""Tiny causal LMs: gpt2/llama by name, safetensors-only save/load (equal logits), errors that say what to do;
continue_ids (exact length, prompt kept, seeded without touching the caller's RNG, temperature -> 0 is greedy);
cached_lm trains once."""
from __future__ import annotations

import json

import pytest
import torch

from kdlab.errors import CheckpointError, ConfigError
from kdlab.text.cache import cached_lm
from kdlab.text.generate import continue_ids
from kdlab.text.models import context_of, create_lm, load_lm, logits_of, save_lm, vocab_of

V = 300


def _lm(arch="gpt2", seed=0, **kw):
    torch.manual_seed(seed)
    size = {"layers": 2, "width": 32, "heads": 4, "context": 33, **kw}
    return create_lm(arch, V, 0, **size).eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_safetensors_round_trip(arch, tmp_path):
    m = _lm(arch)
    assert vocab_of(m) == V and context_of(m) == 33
    folder = save_lm(m, tmp_path / arch)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    back = load_lm(folder).eval()
    x = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(logits_of(m, x), logits_of(back, x))


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        load_lm(tmp_path)
    folder = save_lm(_lm(), tmp_path / "m")
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save({}, folder / "pytorch_model.bin")  # pickle weights are refused, not loaded
    with pytest.raises(CheckpointError, match="safetensors"):
        load_lm(folder, where="teacher_path")


def test_create_errors():
    with pytest.raises(ConfigError, match="width") as e:
        create_lm("gpt2", V, 0, width=30, heads=4)
    assert "28" in str(e.value) and "32" in str(e.value)  # names valid widths around it
    with pytest.raises((ConfigError, KeyError)) as e:
        create_lm("mamba", V, 0)
    assert "gpt2" in str(e.value) and "llama" in str(e.value)
    with pytest.raises(ConfigError):
        create_lm("gpt2", V, 0, layers=0)


def test_continue_ids(tmp_path):
    m = _lm(context=64)
    prompt = torch.randint(1, V, (3, 5), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = continue_ids(m, prompt, 20, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is untouched
    assert a.shape == (3, 25) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, continue_ids(m, prompt, 20, seed=7))
    assert not torch.equal(a, continue_ids(m, prompt, 20, seed=8))
    # temperature -> 0: greedy decoding, written out here
    greedy = prompt.clone()
    with torch.no_grad():
        for _ in range(10):
            nxt = m(input_ids=greedy).logits[:, -1].argmax(-1, keepdim=True)
            greedy = torch.cat([greedy, nxt], 1)
    assert torch.equal(continue_ids(m, prompt, 10, temperature=1e-4, seed=1), greedy)
    # end of text does not stop a row: a model that always predicts it still gives exactly new_tokens tokens
    eos_lover = _lm(context=64)
    with torch.no_grad():
        eos_lover.transformer.ln_f.weight.zero_()
        eos_lover.transformer.ln_f.bias.copy_(torch.linspace(-1, 1, 32))
        eos_lover.transformer.wte.weight[0] = 50 * torch.linspace(-1, 1, 32)  # tied: the output row of eos
    out = continue_ids(eos_lover, prompt, 12, seed=0)
    assert out.shape == (3, 17) and bool((out[:, 5:] == 0).all())
    m.train()
    continue_ids(m, prompt, 2, seed=0)
    assert m.training  # the model's mode is restored


def test_cached_lm_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    calls = []

    def train():
        calls.append(1)
        return _lm(seed=3), {"bpb": 1.5}

    config = {"arch": "gpt2", "steps": 10, "seed": 3}
    m1, meta1 = cached_lm(config, train)
    m2, meta2 = cached_lm(dict(reversed(config.items())), train)  # key order does not matter
    assert calls == [1] and meta1["source"] == "trained" and meta2["source"] == "cache" and meta2["bpb"] == 1.5
    x = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(logits_of(m1.eval(), x), logits_of(m2.eval(), x))
    _, meta3 = cached_lm({**config, "steps": 11}, train)
    assert calls == [1, 1] and meta3["source"] == "trained"
    # a damaged entry is trained again
    entry = next(p for p in (tmp_path / "lm_models").iterdir() if p.is_dir()
                 and json.loads((p / "kdlab_meta.json").read_text())["config"] == config)
    for f in entry.glob("*.safetensors"):
        f.unlink()
    _, meta4 = cached_lm(config, train)
    assert calls == [1, 1, 1] and meta4["source"] == "trained"
