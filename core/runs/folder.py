"""The run folder: which folder a run may write into, and what a resume may change.

A new run writes only into a folder that does not exist, is empty, or (with ``--overwrite``) holds an
earlier run, which is then cleared. A folder holding anything else (a checkpoint, someone's files) is
never written into. ``--resume`` continues the run in its folder with the configuration it was started
with; options that would change what is computed are refused by name.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

import attrs

from core.base.devices import resolve_device, resolve_precision
from core.base.errors import ConfigError
from core.base.files import check_folder
from core.runs.config import DEFAULT_LR, RunConfig, differences

log = logging.getLogger("platform")

# Settings a resumed run may change: where the data lies, how fast to compute, how often to checkpoint
# and log; none of them changes what is computed.
MAY_CHANGE_ON_RESUME = ("threads", "data_dir", "save_every", "log_every")
# What a run leaves behind that a restart from epoch 0 would rewrite.
RESULTS = ("best.pt", "metrics.json", "predictions")


def default_output_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(config.tasks)}"


def finalize(config: RunConfig) -> RunConfig:
    """Fill in the output folder, the learning rate (by ``--mode`` when not given) and the precision
    (``auto`` resolved for this machine), so the saved configuration names them and a resumed run
    computes as the first part did."""
    precision = resolve_precision(config.precision, resolve_device(config.device))
    lr = DEFAULT_LR[config.mode] if config.lr is None else config.lr
    config = attrs.evolve(config, precision=precision, lr=lr)
    if config.output_dir:
        return config
    return attrs.evolve(config, output_dir=str(default_output_dir(config)))


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a platform run: its ``config.json`` is a saved run configuration."""
    try:
        RunConfig.load(folder / "config.json")
    except (OSError, ValueError, TypeError):
        return False
    return True


def claim(folder: Path, *, overwrite: bool = False) -> None:
    """Make sure a new run may write into ``folder``: new, empty, or an earlier run cleared by
    ``overwrite``. Anything else is refused, and nothing in the folder is touched."""
    check_folder(folder, "--output-dir", "choose a folder for the run")  # a file, or a path below one
    if not folder.exists() or not any(folder.iterdir()):
        return
    if not is_run_folder(folder):
        held = ", ".join(sorted(p.name for p in folder.iterdir())[:5])
        raise ConfigError(f"--output-dir {folder} is not empty and holds no platform run ({held}, ...); choose a new "
                          "or empty folder (nothing was changed)")
    if not overwrite:
        raise ConfigError(f"--output-dir {folder} already holds a run; pass --resume {folder} to continue it, "
                          "--overwrite to start it again from scratch, or choose another folder (nothing was changed)")
    log.warning("--overwrite: clearing the earlier run in %s", folder)
    for entry in folder.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def saved_config(folder: Path) -> RunConfig:
    """The configuration a run in ``folder`` was started with."""
    if not (folder / "config.json").is_file():
        raise ConfigError(f"--resume {folder}: no run to resume there (config.json missing)")
    return RunConfig.load(folder / "config.json")


def check_resumable(config: RunConfig, folder: Path,
                    complete: Callable[[RunConfig], RunConfig] = lambda config: config) -> RunConfig:
    """``config`` for continuing the run in ``folder``: it must equal the saved configuration (with what it
    left to defaults filled in by ``complete``) except for :data:`MAY_CHANGE_ON_RESUME`; the differences
    are refused by option name."""
    saved = finalize(complete(saved_config(folder)))
    kept = {name: getattr(saved, name) for name in ("output_dir", *MAY_CHANGE_ON_RESUME)}
    changed = differences(saved.to_dict(), attrs.evolve(config, **kept).to_dict())
    if changed:
        raise ConfigError(f"--resume {folder} continues the run with the configuration it was started with; "
                          f"{'; '.join(changed)} would change it: drop them, or start a new run in another folder")
    return attrs.evolve(saved, output_dir=str(folder), **{k: getattr(config, k) for k in MAY_CHANGE_ON_RESUME})


def check_restartable(folder: Path) -> None:
    """A run to resume whose ``last.pt`` is missing starts from epoch 0, which is only safe when it had
    saved no results yet (it was stopped before its first checkpoint)."""
    results = [name for name in RESULTS if (folder / name).exists()]
    if results:
        raise ConfigError(f"--resume {folder}: last.pt is missing, but the folder holds results ({', '.join(results)}) "
                          "that a restart from epoch 0 would rewrite; start a new run in another folder, or start this "
                          "one again with --overwrite (nothing was changed)")
    log.warning("--resume %s: the run stopped before its first checkpoint (no last.pt); starting from epoch 0", folder)


def best_epoch_recorded(folder: Path) -> int | str | None:
    """The best epoch ``metrics.json`` records; ``"none"`` in a run folder without one; None elsewhere."""
    try:
        return json.loads((folder / "metrics.json").read_text())["best"]["epoch"]
    except FileNotFoundError:
        return "none" if (folder / "config.json").is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return "none"
