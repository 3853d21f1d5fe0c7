"""A study under torchrun (two processes, gloo on loopback): the main process asks Optuna for each
trial and the other trains it with it; a pruning decision stops both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from core.experiment.config import RunConfig

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.integration


def test_a_study_under_torchrun_trains_each_trial_on_every_process(tmp_path, tiny_data_dir):
    base = RunConfig(tasks=("sst",), checkpoint="tiny", limit=16, max_length=24, batch_size=8, epochs=2, threads=1,
                     sampler="rrobin", device="cpu", data_dir=str(tiny_data_dir))
    base.save(tmp_path / "base.json")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(ROOT / "tests" / "study_worker.py"), str(tmp_path / "base.json"), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}  # gloo on loopback
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    trials = optuna.load_study(study_name="ddp", storage=f"sqlite:///{tmp_path / 'ddp' / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert list(trials[0].intermediate_values) == [1]  # stopped after its first epoch, on both processes
    assert trials[0].user_attrs["reason"].startswith("pruned after epoch 1 of 2")
    assert sorted(trials[1].intermediate_values) == [1, 2] and trials[1].user_attrs["metrics"]["epoch"] in (0, 1)
    for trial in trials:
        folder = tmp_path / "ddp" / f"trial-{trial.number}"
        assert len(list((folder / "tensorboard").iterdir())) == 1  # written by the main process alone
        assert json.loads((folder / "config.json").read_text())["output_dir"] == str(folder)
    assert result.stdout.count("trial  state") == 1  # the table of trials, printed once
