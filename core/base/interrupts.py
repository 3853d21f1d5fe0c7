"""Stopping a command at a safe point: a stop signal (Ctrl-C, SIGTERM) that arrives while a file is being
written waits until the write is done, so a checkpoint is never cut in half by the stop itself.

The command line installs :func:`handler` for SIGINT and SIGTERM; code that must not be interrupted runs
in :func:`uninterrupted`.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping a job, ``kill PID``): stops a command as Ctrl-C does."""


_depth = 0  # how many uninterrupted blocks are open
_pending: KeyboardInterrupt | None = None  # a stop that arrived inside one


def handler(signum: int, frame: Any) -> None:
    """Raise the stop now, or when the innermost uninterrupted block ends."""
    global _pending
    stop = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if _depth:
        _pending = stop
    else:
        raise stop


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A block that a stop signal does not cut: the stop is raised when it ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            stop, _pending = _pending, None
            raise stop
