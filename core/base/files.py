"""Run checkpoints: written atomically, read safely, with errors that name the file.

``last.pt`` holds everything a resumed run needs (model, optimizer, scheduler, sampler, regularizer
state, RNG states, position in the plan); ``best.pt`` holds the best model and its configuration,
which ``platform evaluate`` and ``platform predict`` rebuild the model from.

Files are read with ``torch.load(weights_only=True)``: only tensors and plain data (dicts, lists,
tuples, strings, numbers) load, so a crafted file cannot run code. Everything saved here is kept in
that form, RNG states included.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.base.errors import ConfigError, PlatformError


class CheckpointFileError(PlatformError):
    """A run checkpoint is missing, unreadable, unsafe or not one of ours."""


FORMAT = "platform-run-checkpoint/1"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a killed write never leaves a half file behind (at most a
    ``.tmp`` beside it, which the next save replaces)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """The state saved in ``path`` (a run folder means its ``best.pt``), loaded on the CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointFileError(f"run checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files; we name the file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(error), re.IGNORECASE)
        if unsafe:
            raise CheckpointFileError(f"refused to load {path}: it asks to import {unsafe.group(1)} (unpickling it "
                                      "could run code); platform checkpoints hold only tensors and plain data") from None
        raise CheckpointFileError(f"run checkpoint {path} is corrupt or unreadable (not a torch.save file of "
                                  "tensors and plain data)") from None
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointFileError(f"run checkpoint {path} is corrupt or unreadable: {_first_line(error)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointFileError(f"{path} is not a platform run checkpoint (format {FORMAT!r} expected)")
    return state


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --------------------------------------------------------------------------------------------------
# RNG states, in the plain form the safe loader accepts
# --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every generator a training step draws from: torch (CPU and, once used, CUDA), Python, NumPy."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own generators
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples all the way down."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_folder(path: str | Path, option: str, hint: str = "choose a folder (a new one is made)") -> None:
    """Refuse a folder option that names an existing file, or a path below one (no folder can be made
    there); ``hint`` says what would be right."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if candidate.is_dir():
                return
            where = f"{path} is a file" if candidate == path else f"{path}: {candidate} is a file"
            raise ConfigError(f"{option} {where}, not a folder; {hint}")
