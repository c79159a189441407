"""Reading kdlab checkpoint files: ``load_state`` (weights only, with clear errors)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.errors import CheckpointError


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; missing/truncated/corrupt -> CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(e).__name__}: {e}); "
                              "nothing was changed") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a kdlab checkpoint (no 'model' entry)")
    return state
