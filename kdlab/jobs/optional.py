"""Jobs whose science needs an optional extra import it through here: a missing package says how to install it."""
from __future__ import annotations

import importlib
from typing import Any

from kdlab.errors import ConfigError

EXTRAS = {
    "text": ("Hugging Face transformers, tokenizers and datasets", ("tokenizers", "transformers", "datasets",
                                                                    "safetensors")),
    "diffusion": ("Hugging Face diffusers", ("diffusers", "safetensors")),
}


def extra_module(name: str, extra: str, job: str) -> Any:
    """Module ``name``, or ConfigError naming the missing package and ``pip install 'kdlab[<extra>]'``."""
    what, packages = EXTRAS[extra]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in packages:
            raise ConfigError(f"the {job} job needs {e.name!r}: pip install 'kdlab[{extra}]' ({what})") from e
        raise
