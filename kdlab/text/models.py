"""Causal language models from Hugging Face ``transformers``: tiny GPT-2 / Llama built from a config by name
(``create_lm``), or a user's model loaded from a local folder (``load_lm``); saved as safetensors (no pickle)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.errors import CheckpointError, ConfigError
from kdlab.registry import Param, Registry

LM_ARCHS = Registry("language model architecture")
_SIZE = {
    "layers": Param(2, "transformer blocks", int, 1, 48),
    "width": Param(128, "hidden size (a multiple of heads)", int, 8, 4096),
    "heads": Param(4, "attention heads", int, 1, 64),
    "context": Param(256, "longest sequence the model takes (positions)", int, 8, 8192),
}


def _quiet() -> None:
    """transformers warns about GPT-2's default special-token ids on small vocabularies (kdlab sets its own) and
    draws progress bars for every save and load: neither belongs in a run's log."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars in every worker log
    except ImportError:  # pragma: no cover - transformers is the extra this module needs
        pass


def _check(width: int, heads: int) -> None:
    if width % heads:
        raise ConfigError(f"width: {width} is not a multiple of heads ({heads}); valid widths: "
                          f"{', '.join(str(heads * k) for k in range(max(1, width // heads - 1), width // heads + 3))}")


@LM_ARCHS.register("gpt2", params=_SIZE)
def gpt2(vocab_size: int, eos_id: int = 0, *, layers: int, width: int, heads: int, context: int) -> nn.Module:
    """GPT-2 (Radford et al. 2019): learned positions, LayerNorm, GELU MLP, tied input/output embeddings."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _check(width, heads)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=context, n_embd=width, n_layer=layers, n_head=heads,
                     bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


@LM_ARCHS.register("llama", params=_SIZE)
def llama(vocab_size: int, eos_id: int = 0, *, layers: int, width: int, heads: int, context: int) -> nn.Module:
    """Llama (Touvron et al. 2023): rotary positions, RMSNorm, SwiGLU MLP, untied output head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _check(width, heads)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=width * 8 // 3 // 8 * 8 or 8,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=context, bos_token_id=eos_id, eos_token_id=eos_id,
                      pad_token_id=eos_id, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def create_lm(arch: str, vocab_size: int, eos_id: int = 0, where: str = "arch", **params: Any) -> nn.Module:
    """A freshly initialised causal LM of architecture ``arch`` (``gpt2`` or ``llama``) for a vocabulary."""
    _quiet()
    values = LM_ARCHS.validate(arch, params, where=f"{where.rsplit('.', 1)[0]}.params" if "." in where else "params")
    return LM_ARCHS.get(arch, where)(int(vocab_size), int(eos_id), **values)


def context_of(model: nn.Module) -> int:
    """The longest sequence ``model`` takes."""
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 0) or 1 << 30)


def save_lm(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` as ``config.json`` + ``model.safetensors`` (no pickle)."""
    _quiet()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def load_lm(folder: str | Path, where: str = "path") -> nn.Module:
    """A causal LM from a local folder (``AutoModelForCausalLM``, safetensors weights only; never downloads)."""
    from transformers import AutoModelForCausalLM

    _quiet()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{where}: {folder} is not a model folder (no config.json); save one with "
                          "model.save_pretrained(folder) or kdlab.text.save_lm")
    if not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"{where}: {folder} has no .safetensors weights; kdlab loads only safetensors "
                              "(pickle-free); re-save with model.save_pretrained(folder, safe_serialization=True)")
    try:
        return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: cannot load a causal LM from {folder}: {e}") from e


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vocab_of(model: nn.Module) -> int:
    """Rows of the model's output layer (its vocabulary)."""
    return int(model.get_output_embeddings().weight.shape[0])


def logits_of(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token logits [B, L, V] of ``model`` for token ids [B, L]."""
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits
