"""The run folder: which folder a run may write into, what a resume may change, the one lock that keeps a
folder to one run at a time, and :class:`RunFolder`, the folder as a run holds it (its lock, its files,
its writer).

A new run writes only into a folder that does not exist, is empty, or (with ``--overwrite``) holds an
earlier run, of which only what a run writes is cleared: a folder holding anything else (a checkpoint,
someone's files) is never written into, and the message names what is in the way. A default folder name
is claimed atomically, so runs started in the same second never share one. While a run (or its resume)
is in progress it holds a lock on the folder; a second run into the same folder is refused. ``--resume``
continues the run in its folder with the configuration it was started with; options that would change what
is computed are refused by name.

The same rules serve ``platform pretrain`` (its configuration file is ``pretrain.json``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

import attrs

from core.base import distributed, files
from core.base.devices import resolve_device, resolve_precision
from core.base.errors import ConfigError
from core.base.files import atomic_write, check_folder
from core.experiment.config import DEFAULT_LR, RunConfig, differences

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("platform")

# Settings a resumed run may change: where the data lies, how fast to compute, how often to checkpoint
# and log; none of them changes what is computed.
MAY_CHANGE_ON_RESUME = ("threads", "data_dir", "save_every", "log_every")
# What a run leaves behind that a restart from epoch 0 would rewrite.
RESULTS = ("best.pt", "metrics.json", "predictions")
# Everything a run (or a pretraining run) writes into its folder: all that --overwrite may clear.
RUN_FILES = ("config.json", "pretrain.json", "data.json", "metrics.json", "last.pt", "best.pt", "predictions",
             "tensorboard", "bam", "model.safetensors", "vocab.txt", "tokenizer_config.json")


def written_by_a_run(name: str) -> bool:
    """Whether an entry of a run folder is one a run writes (a temporary a killed write left included)."""
    return name in RUN_FILES or (name.startswith(".") and name.endswith(".tmp"))


class FolderLock:
    """An exclusive lock on the run folder itself (``flock`` on the folder, so no file is left behind) for
    the life of a run; a second run into it is refused. The operating system releases it when the process
    ends, however it ends."""

    def __init__(self, folder: Path, option: str = "--output-dir"):
        self.folder, self.option = Path(folder), option
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{self.option} {self.folder} is in use by another run, started before this one and "
                              "not yet ended; wait for it to end, or choose another folder (nothing was changed)") \
                from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def default_output_dir(config: RunConfig) -> Path:
    """A new folder under ``runs/`` named by the time and the tasks, claimed now (made exclusively): runs
    started in the same second get ``-2``, ``-3``, …"""
    return claim_new_name(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(config.tasks)}")


def claim_new_name(base: Path) -> Path:
    """``base`` (or ``base-2``, ``base-3``, …), made as an empty folder by this process."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"no free folder name beside {base}; pass --output-dir")


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


def folder_of(config: Any) -> Path:
    """The run folder a finalized configuration names."""
    if config.output_dir is None:
        raise ConfigError("the run has no folder yet: finalize its configuration first")
    return Path(config.output_dir)


def is_run_folder(folder: Path, config_file: str = "config.json") -> bool:
    """Whether ``folder`` holds a platform run: its configuration file is a saved run configuration."""
    try:
        data = json.loads((folder / config_file).read_text())
    except (OSError, ValueError):
        return False
    if config_file != "config.json":
        return isinstance(data, dict)
    try:
        RunConfig.from_dict(data)
    except (ValueError, TypeError):
        return False
    return True


def claim(folder: Path, *, overwrite: bool = False, config_file: str = "config.json",
          overwritable: bool = True) -> FolderLock:
    """Make sure a new run may write into ``folder`` and hold it: new, empty, or an earlier run cleared by
    ``overwrite`` (only of what a run writes). Anything else is refused, and nothing in the folder is
    touched. Returns the folder's lock, held; the run releases it when it ends."""
    check_folder(folder, "--output-dir", "choose a folder for the run")  # a file, or a path below one
    held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if held:
        _may_clear(folder, held, overwrite, config_file, overwritable)  # refused before anything is written into it
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe, name = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=".tmp")  # may the run write there?
        os.close(probe)
        os.unlink(name)
    except OSError as error:
        raise ConfigError(f"--output-dir {folder} cannot be written ({error.strerror}); choose a folder you may "
                          "write to") from None
    lock = FolderLock(folder)
    lock.acquire()
    try:
        entries = sorted(p.name for p in folder.iterdir())  # again, now that it is ours
        if entries:
            _may_clear(folder, entries, overwrite, config_file, overwritable)
            log.warning("--overwrite: clearing the earlier run in %s", folder)
            for name in entries:
                entry = folder / name
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def _may_clear(folder: Path, entries: list[str], overwrite: bool, config_file: str, overwritable: bool) -> None:
    """Refuse to clear a folder that holds no run, or anything a run did not write."""
    if not is_run_folder(folder, config_file):
        held = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(f"--output-dir {folder} is not empty and holds no platform run ({held}); choose a new "
                          "or empty folder (nothing was changed)")
    if not overwrite:
        again = "--overwrite to start it again from scratch, " if overwritable else ""
        raise ConfigError(f"--output-dir {folder} already holds a run; pass --resume {folder} to continue it, {again}"
                          "or choose another folder (nothing was changed)")
    foreign = [name for name in entries if not written_by_a_run(name)]
    if foreign:
        raise ConfigError(f"--overwrite would clear {folder}, which holds files no run writes ({', '.join(foreign)}); "
                          "move them out of the folder, or choose another folder (nothing was changed)")


def lock_for_resume(folder: Path) -> FolderLock:
    """The lock of the run in ``folder``, held while it is resumed; the temporaries a killed write left
    there are removed (they are the run's own, and nothing reads them)."""
    lock = FolderLock(folder, "--resume")
    lock.acquire()
    for stale in [*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp")]:
        stale.unlink(missing_ok=True)
    return lock


def saved_config(folder: Path) -> RunConfig:
    """The configuration a run in ``folder`` was started with."""
    if not (folder / "config.json").is_file():
        if (folder / "pretrain.json").is_file():
            raise ConfigError(f"--resume {folder}: a pretraining run; continue it with `platform pretrain --resume "
                              f"{folder}`")
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
    """The best epoch ``metrics.json`` records; ``"missing"`` in a run folder without one, ``"unreadable"``
    when it cannot be read (a corrupt or foreign file); None elsewhere."""
    try:
        record: Any = json.loads((folder / "metrics.json").read_text())
        return record["best"]["epoch"]
    except FileNotFoundError:
        return "missing" if (folder / "config.json").is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable"


class RunFolder:
    """A run's folder as the run holds it: its path; its lock, taken by :meth:`claim` (a new run, on the
    rules above) or :meth:`take_for_resume`, and held by the main process until :meth:`close`; its files, written
    atomically (:meth:`write`) and its state files saved and read safely, never unpickled (:meth:`save` and
    :meth:`load`, ``core.base.files``: the whole RNG state travels in the states a run saves); and the run's
    TensorBoard writer. Under torchrun only the main process claims and writes; the others hold it unlocked,
    and their writer writes nothing."""

    def __init__(self, path: Path, lock: FolderLock | None = None):
        self.path, self.lock = Path(path), lock
        self._writer: Any = None

    def claim(self, *, overwrite: bool = False, config_file: str = "config.json", overwritable: bool = True) -> None:
        """Take the folder for a new run (see :func:`claim`), locked."""
        self.lock = claim(self.path, overwrite=overwrite, config_file=config_file, overwritable=overwritable)

    def take_for_resume(self) -> None:
        """Take the folder of a run to continue, locked (see :func:`lock_for_resume`)."""
        self.lock = lock_for_resume(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, content: bytes | str | Callable[[BinaryIO], None]) -> None:
        """Write the file ``name`` (a path below the folder) whole or not at all."""
        atomic_write(self.path / name, content)

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Save a state file (``last.pt``, ``best.pt``) atomically."""
        files.save(self.path / name, state)

    def load(self, name: str) -> dict[str, Any]:
        """Read a state file back, tensors and plain values only."""
        return files.load(self.path / name)

    def writer(self, global_step: int) -> SummaryWriter:
        """The run's TensorBoard writer under ``tensorboard/``, made on first use; events after
        ``global_step`` that an earlier, killed part of the run wrote are purged. It writes nothing on a
        process other than the main one."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = (SummaryWriter(str(self.path / "tensorboard"), purge_step=global_step or None)
                            if distributed.is_main() else distributed.NullWriter())
        return self._writer

    def close(self) -> None:
        """The writer closed, the lock released (closing twice is harmless)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.lock is not None:
            self.lock.release()
