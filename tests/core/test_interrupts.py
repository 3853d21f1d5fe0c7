"""A stop signal during a file write waits until the file is whole: checkpoints are never cut by the stop."""

import os
import signal

import pytest

from core.base import interrupts
from core.base.files import atomic_write


@pytest.mark.parametrize("number, stop", [(signal.SIGTERM, interrupts.Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_stop_during_a_write_is_raised_once_the_file_is_whole(tmp_path, number, stop):
    def write(handle):
        handle.write(b"first half, ")
        os.kill(os.getpid(), number)  # a real signal, mid-write
        handle.write(b"second half")

    previous = signal.signal(number, interrupts.handler)
    try:
        with pytest.raises(stop):
            atomic_write(tmp_path / "state", write)
    finally:
        signal.signal(number, previous)
    assert (tmp_path / "state").read_bytes() == b"first half, second half"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_stop_outside_a_write_is_raised_at_once():
    previous = signal.signal(signal.SIGTERM, interrupts.handler)
    try:
        with pytest.raises(interrupts.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next bytecode
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.integration
def test_ctrl_c_while_the_command_loads_is_one_line(tmp_path):
    """Ctrl-C during the imports before any command runs (torch takes seconds): a real SIGINT, sent by the
    process to itself as it starts importing torch, ends it with one line and exit status 130, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "interrupted_start.py"
    script.write_text(
        "import builtins, os, signal\n"
        "from core.cli import entry\n"
        "real = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'torch':\n"
        "        builtins.__import__ = real\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "import sys; sys.argv = ['platform', 'plugins']\n"
        "entry()\n")
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(root)}, cwd=tmp_path)
    assert result.returncode == 130 and result.stderr == "interrupted; nothing was changed\n", result.stderr[-2000:]
