"""Run checkpoints: written atomically, read with errors that name the file.

``last.pt`` holds everything a resumed run needs (model, optimizer, scheduler, sampler, regularizer
state, RNG states, position in the plan); ``best.pt`` holds the best model and its configuration,
which ``platform evaluate`` and ``platform predict`` rebuild the model from.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import PlatformError


class CheckpointFileError(PlatformError):
    """A run checkpoint is missing, unreadable or not one of ours."""


FORMAT = "platform-run-checkpoint/1"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a killed write never leaves a half file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointFileError(f"run checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointFileError(f"run checkpoint {path} is corrupt or unreadable: {error}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointFileError(f"{path} is not a platform run checkpoint (format {FORMAT!r} expected)")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own generators
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
