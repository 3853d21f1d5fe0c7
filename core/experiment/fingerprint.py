"""Content fingerprints of the data files a run reads, so that a resumed run (or a continued study) on
files edited in between is refused, naming the files, instead of training and scoring on two versions.

A run records them in its folder's ``data.json`` when it starts: per file (by its path relative to the data
folder), the SHA-256 of its bytes and the splits it serves. A resume compares: a changed train or dev file is
refused (training and model selection would mix versions); a changed test file is only reported (the
predictions of it are written at the end, from whatever it holds then).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from core.base.errors import ConfigError
from core.base.files import atomic_write
from core.tasks.task import Task

log = logging.getLogger("platform")

RECORD = "data.json"
REFUSED = ("train", "dev")  # splits whose change a resume refuses


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprints(tasks: dict[str, Task], data_dir: Path) -> dict[str, dict[str, Any]]:
    """Per data file the tasks read (missing ones left out: reading them fails with its own message), its
    digest and the splits it serves, by its path relative to ``data_dir`` (absolute outside it)."""
    files: dict[str, dict[str, Any]] = {}
    for task in tasks.values():
        for split, name in task.spec.files.items():
            path = Path(data_dir) / name
            if not path.is_file():
                continue
            key = name if not Path(name).is_absolute() else str(path)
            entry = files.setdefault(key, {"sha256": file_digest(path), "splits": []})
            entry["splits"] = sorted({*entry["splits"], f"{task.name}/{split}"})
    return files


def record(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    atomic_write(Path(folder) / RECORD, json.dumps({"files": files}, indent=2) + "\n")


def check(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Refuse a resume whose train or dev files changed since the run in ``folder`` recorded them (a run
    without a record, from before records were kept, gets one now)."""
    try:
        recorded = json.loads((Path(folder) / RECORD).read_text())["files"]
    except FileNotFoundError:
        record(folder, files)
        return
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{Path(folder) / RECORD} is unreadable; it records the data the run was trained on, so "
                          "the run cannot be resumed safely (start a new run)") from None
    changed = {name: entry for name, entry in recorded.items()
               if name in files and files[name]["sha256"] != entry["sha256"]}
    refused = [name for name, entry in changed.items()
               if any(split.rpartition("/")[2] in REFUSED for split in entry["splits"])]
    if refused:
        raise ConfigError(f"--resume {folder}: the data changed since the run started: {', '.join(refused)} "
                          f"({'; '.join(', '.join(changed[name]['splits']) for name in refused)}) no longer holds what "
                          "it trained and selected on; restore the files, or start a new run")
    for name in changed:
        log.warning("%s changed since the run started (%s): its predictions will be of the new version", name,
                    ", ".join(changed[name]["splits"]))
