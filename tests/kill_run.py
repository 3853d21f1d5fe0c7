"""Run the training of a saved config and SIGKILL the process after step N (a real crash, mid-run).

Usage: python tests/kill_run.py CONFIG_JSON STEP
"""

import os
import signal
import sys

from core import trainer
from core.assembly import plugin_manager
from core.config import RunConfig
from core.hookspecs import hookimpl


class KillAtStep:
    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def platform_on_after_step(self, run, step):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def kill_after(config_file: str, step: int) -> None:
    config = RunConfig.load(config_file)
    pm = plugin_manager(config)
    pm.register(KillAtStep(step))
    trainer.train(trainer.prepare(config, pm))


if __name__ == "__main__":
    kill_after(sys.argv[1], int(sys.argv[2]))
