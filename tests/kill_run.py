"""Run the training of a saved config and SIGKILL the process at a chosen moment: a real crash.

Usage:
    python tests/kill_run.py CONFIG_JSON step N          # right after global step N
    python tests/kill_run.py CONFIG_JSON save FILE K      # as the K-th save of FILE (last.pt, best.pt) starts
    python tests/kill_run.py CONFIG_JSON partial FILE K   # halfway through writing the K-th save of FILE
    python tests/kill_run.py CONFIG_JSON call NAME K      # as the K-th call of core.runfiles.NAME starts
"""

import io
import os
import signal
import sys
from pathlib import Path

import torch

from core.base import files as checkpoints
from core.build.run import prepare
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.experiment.config import RunConfig
from core.train import checkpointing as runfiles
from core.train.loop import train


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep:
    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def platform_on_after_step(self, run, step):
        if step == self.step:
            die()


def written(target) -> str:
    """The name of the file ``torch.save`` writes: a path, or an open file (the atomic writer's temporary)."""
    if hasattr(target, "fileno"):
        return Path(os.readlink(f"/proc/self/fd/{target.fileno()}")).name
    return Path(target).name


def kill_in_save(name: str, count: int, partial: bool) -> None:
    """Make the ``count``-th save of the file ``name`` die before it writes (or halfway through)."""
    real_save, seen = torch.save, []

    def save(state, target):
        if written(target).startswith(f".{name}.") and written(target).endswith(".tmp"):
            seen.append(target)
            if len(seen) == count:
                if partial:
                    buffer = io.BytesIO()
                    real_save(state, buffer)
                    target.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    target.flush()
                    os.fsync(target.fileno())
                die()
        real_save(state, target)

    checkpoints.torch.save = save


def kill_in_call(name: str, count: int) -> None:
    real, calls = getattr(runfiles, name), []

    def call(*args, **kwargs):
        calls.append(name)
        if len(calls) == count:
            die()
        return real(*args, **kwargs)

    setattr(runfiles, name, call)


def main(config_file: str, mode: str, *where: str) -> None:
    config = RunConfig.load(config_file)
    pm = make_plugin_manager(enabled=config.plugins)
    if mode == "step":
        pm.register(KillAtStep(int(where[0])))
    elif mode == "call":
        kill_in_call(where[0], int(where[1]))
    else:
        kill_in_save(where[0], int(where[1]), partial=mode == "partial")
    train(prepare(config, pm))


if __name__ == "__main__":
    main(*sys.argv[1:])
