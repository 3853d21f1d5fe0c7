"""The process's peak resident memory, as Linux counts it."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB: Linux's ``VmHWM`` where there is one (``ru_maxrss`` survives
    ``exec``, so a child process would report at least its parent's peak), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
