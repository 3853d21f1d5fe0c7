"""A study that chooses the method (studies/methods.py, studies/methods.toml): with several balancer plugins
enabled, each trial draws the balancer and searches that method's own space only."""

import json
from pathlib import Path

import optuna
import pytest

from core.cli.main import main
from studies.runner import StudySettings, run_study
from tests.studies.test_study import tiny_base

pytestmark = pytest.mark.slow  # a real tiny study: left out of make quick

METHODS = Path(__file__).parents[2] / "studies" / "methods.toml"
PLUGINS = "uncertainty,dwa,rlw,famo"


def test_show_space_offers_every_method_and_each_methods_own_settings(capsys):
    code = main(["study", "methods", "--show-space", "--tasks", "sst,quora,sts", "--checkpoint", "tiny", "--plugins",
                 PLUGINS, "--update", "summed", "--space-file", str(METHODS)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "equal, uncertainty, dwa, rlw, famo" in lines["balancer"]
    assert {"uncertainty_lr", "dwa_temperature", "famo_lr", "famo_gamma"} <= set(lines)
    assert "fixed" in lines["lr"] and "fixed" in lines["loss_weight_sts"]


def test_each_trial_trains_the_method_it_drew_with_that_methods_settings_only(tmp_path, tiny_data_dir):
    base = tiny_base(tiny_data_dir, tasks=("sst", "quora", "sts"), plugins=tuple(PLUGINS.split(",")), update="summed",
                     epochs=1)
    settings = StudySettings(name="methods", study_dir=str(tmp_path), trials=4, space_file=str(METHODS),
                             enqueue=["balancer=famo", "balancer=dwa", "balancer=equal", "balancer=uncertainty"])
    study = run_study(base, settings)
    trials = study.trials
    assert [t.params["balancer"] for t in trials] == ["famo", "dwa", "equal", "uncertainty"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    own = {"famo": {"famo_lr", "famo_gamma"}, "dwa": {"dwa_temperature"}, "equal": set(),
           "uncertainty": {"uncertainty_lr"}}
    every = set().union(*own.values())
    for trial in trials:
        method = trial.params["balancer"]
        assert set(trial.params) & every == own[method], trial.params
        saved = json.loads((Path(trial.user_attrs["run_dir"]) / "config.json").read_text())
        assert saved["balancer"] == method
        assert set(saved["components"]) - {"rrobin"} <= {method}
