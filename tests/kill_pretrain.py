"""Run a saved pretraining config and SIGKILL the process during step N (a real crash, mid-run).

Usage: python tests/kill_pretrain.py PRETRAIN_JSON STEP
"""

import os
import signal
import sys

from core.build import pretrain
from core.pretrain import config as config_
from core.pretrain import loop as loop_


def kill_during(config_file: str, step: int) -> None:
    train_step = loop_.train_step

    def killing(run, batch):
        result = train_step(run, batch)
        if run.global_step + 1 == step:  # step N's update is done, its counter and checkpoint are not
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    loop_.train_step = killing
    run = pretrain.prepare(config_.PretrainConfig.load(config_file))
    loop_.train(run)


if __name__ == "__main__":
    kill_during(sys.argv[1], int(sys.argv[2]))
