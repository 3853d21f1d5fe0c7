"""Where data and caches live: the data folder (``--data-dir``, else ``$PLATFORM_DATA_DIR``, else
``../shared/data/cs224n`` beside the project) and the cache folder (``$PLATFORM_CACHE_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

from core.data.tables import DataError

DATA_ENV = "PLATFORM_DATA_DIR"


CACHE_ENV = "PLATFORM_CACHE_DIR"


PROJECT_ROOT = Path(__file__).resolve().parents[2]


DEFAULT_DATA_DIRS = (PROJECT_ROOT.parent / "shared" / "data" / "cs224n", Path.cwd().parent / "shared" / "data" / "cs224n")


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The data folder: ``--data-dir``, else ``$PLATFORM_DATA_DIR``, else ``../shared/data/cs224n``."""
    if flag:
        tried = [(f"--data-dir {flag}", Path(flag))]
    elif os.environ.get(DATA_ENV):
        tried = [(f"${DATA_ENV}={os.environ[DATA_ENV]}", Path(os.environ[DATA_ENV]))]
    else:
        tried = [(f"default {path}", path) for path in dict.fromkeys(DEFAULT_DATA_DIRS)]
    for _, path in tried:
        if path.is_dir():
            return path
    looked = "; ".join(label for label, _ in tried)
    raise DataError(f"no data folder found (looked at: {looked}). Pass --data-dir DIR or set ${DATA_ENV}.")


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "platform")
    path.mkdir(parents=True, exist_ok=True)
    return path
