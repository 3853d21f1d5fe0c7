"""Helpers shared by tests: crash a run for real, in a subprocess."""

import os
import signal
import subprocess
import sys
from pathlib import Path

KILL_SCRIPT = Path(__file__).with_name("kill_run.py")


def kill_run_at_step(config, step: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """Train ``config`` in a subprocess that is SIGKILLed right after global step ``step``."""
    config_file = tmp_path / f"kill-{step}.json"
    config.save(config_file)
    root = str(Path(__file__).parents[1])
    result = subprocess.run([sys.executable, str(KILL_SCRIPT), str(config_file), str(step)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": root}, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result
