"""A study whose pruner stops trial 0 after its first epoch and lets the others train, for running under
torchrun (tests/studies/test_distributed_study.py): the pruner's decision, taken by the main process,
must stop every process's run.

Usage:
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/study_worker.py CONFIG_JSON STUDY_DIR
"""

import sys

import optuna

from core.base import distributed
from core.experiment.config import RunConfig
from studies.runner import StudySettings, run_study


class PruneTrialZero(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number == 0


def main(config_file: str, study_dir: str) -> None:
    base = RunConfig.load(config_file)
    settings = StudySettings(name="ddp", trials=2, study_dir=study_dir)
    try:
        run_study(base, settings, pruner=PruneTrialZero())
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
