"""Files written atomically and state files read safely, with errors that name the file.

Every file the platform writes goes through :func:`atomic_write`: the bytes go to a temporary of a
unique name in the same folder, created exclusively (so a link planted there is never followed), synced,
then renamed over the target. A killed write leaves the target as it was (and at most a ``.NAME.*.tmp``
beside it); a full disk is said as such, the partial temporary removed.

State files (``last.pt``, ``best.pt``, caches) are read with ``torch.load(weights_only=True)``: only tensors
and plain data (dicts, lists, tuples, strings, numbers) load, so a crafted file cannot run code.
Everything saved here is kept in that form, RNG states included.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from core.base.errors import ConfigError, PlatformError
from core.base.interrupts import uninterrupted


class CheckpointFileError(PlatformError):
    """A run checkpoint is missing, unreadable, unsafe or not one of ours."""


FORMAT = "platform-run-checkpoint/1"


def atomic_write(path: Path, content: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Write ``content`` (bytes, text as UTF-8, or a function writing to a binary file) to ``path``
    atomically, through a temporary of a unique name created exclusively in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with uninterrupted():  # a stop signal waits until the file is whole (or removed)
        _write(path, content)


def _write(path: Path, content: bytes | str | Callable[[BinaryIO], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # the mode a plain open() gives (mkstemp's is 0600)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or \
                (isinstance(error, Exception) and _disk_full(path.parent)):  # torch.save reports ENOSPC its own way
            raise FileWriteError(f"{path}: the disk is full; it was not written (what it held before is kept, the "
                                 "partial copy removed): free some space and run again") from None
        if isinstance(error, PermissionError):
            raise FileWriteError(f"{path}: cannot be written ({error.strerror}); choose a folder you may write to") \
                from None
        raise


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has less than a mebibyte left."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FileWriteError(PlatformError):
    """A file could not be written: a full disk, a folder one may not write to."""


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (:func:`atomic_write`): a killed write never leaves a half
    file behind."""
    atomic_write(path, lambda handle: torch.save({"format": FORMAT, **state}, handle))


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
    legacy: Any = np.random.get_state()  # the legacy tuple
    kind, keys, position, has_gauss, cached_gaussian = legacy
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
