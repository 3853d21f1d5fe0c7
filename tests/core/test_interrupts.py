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
