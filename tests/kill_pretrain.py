"""Run a saved pretraining config and SIGKILL the process during step N (a real crash, mid-run).

Usage: python tests/kill_pretrain.py PRETRAIN_JSON STEP
"""

import os
import signal
import sys

from core import pretraining


def kill_during(config_file: str, step: int) -> None:
    train_step = pretraining.train_step

    def killing(run, batch):
        result = train_step(run, batch)
        if run.step + 1 == step:  # step N's update is done, its counter and checkpoint are not
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    pretraining.train_step = killing
    run = pretraining.prepare(pretraining.PretrainConfig.load(config_file))
    pretraining.train(run)


if __name__ == "__main__":
    kill_during(sys.argv[1], int(sys.argv[2]))
