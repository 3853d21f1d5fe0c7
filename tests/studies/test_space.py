"""Search spaces without training: what `--show-space` lists, how a space file narrows, fixes and is refused."""

from pathlib import Path

import optuna
import pytest

from core.build.parts import RunParts
from core.cli.main import main
from core.plugin.component import Component
from core.plugin.manager import make_plugin_manager
from core.experiment.config import RunConfig
from studies.runner import active_spaces
from studies.space import SpaceError, SpaceTrial, dry_run, load_space_file, trial_config

EXAMPLE = Path(__file__).parents[2] / "studies" / "interleaved_ratios.toml"
BASE = ["--tasks", "sst,sts", "--checkpoint", "tiny"]


def show_space(capsys, *args):
    code = main(["study", "demo", "--show-space", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def spaces_of(base):
    return active_spaces(RunParts(base, make_plugin_manager(enabled=base.plugins, third_party=False)))


def test_show_space_lists_the_core_space_and_the_interleaved_ratios(capsys):
    code, out, _ = show_space(capsys, *BASE, "--sampler", "interleaved")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"lr", "warmup", "dropout", "pooling", "layer_decay", "head_lr_multiplier", "ratio_sst",
                          "ratio_sts", "loss_weight_sts"}  # the first task keeps loss weight 1
    assert "float (log)" in lines["head_lr_multiplier"] and "1 .. 100" in lines["head_lr_multiplier"]
    assert "float (log)" in lines["lr"] and "1e-05 .. 0.001" in lines["lr"] and "plugin search_space" in lines["lr"]
    assert "cls, mean" in lines["pooling"]
    assert "int (log)" in lines["ratio_sst"] and "1 .. 64" in lines["ratio_sst"]
    assert "plugin samplers" in lines["ratio_sst"]


def test_sampler_space_follows_the_base_sampler(capsys):
    _, out, _ = show_space(capsys, *BASE, "--sampler", "rrobin", "--mode", "pretrain")
    assert "ratio_" not in out and "alpha_floor" not in out and "layer_decay" not in out
    assert "head_lr_multiplier" not in out
    assert "0.0001 .. 0.01" in out  # pretrain: the heads alone train, at higher rates
    _, out, _ = show_space(capsys, *BASE, "--sampler", "annealed")
    assert "alpha_floor" in out and "ratio_" not in out


def test_show_space_marks_what_the_space_file_changes(capsys):
    code, out, _ = show_space(capsys, *BASE, "--sampler", "interleaved", "--space-file", EXAMPLE)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "0.0001 .. 0.001" in lines["lr"] and "narrowed by the space file" in lines["lr"]
    assert "fixed" in lines["dropout"] and "0.1" in lines["dropout"]
    assert "2 .. 8" in lines["ratio_sts"]


def test_space_file_narrows_and_fixes_every_suggestion():
    base = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", sampler="interleaved")
    spaces, rules = spaces_of(base), load_space_file(EXAMPLE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(8):
        trial = study.ask()
        config = trial_config(base, spaces, SpaceTrial(trial, rules), "out")
        assert 1e-4 <= config.lr <= 1e-3 and config.pooling == "mean" and config.dropout == 0.1
        assert trial.user_attrs["fixed:dropout"] == 0.1 and "dropout" not in trial.params
        ratios = config.components["interleaved"]["ratios"]
        assert set(ratios) == {"sst", "sts"} and all(2 <= r <= 8 for r in ratios.values())
        assert 0.0 <= config.warmup <= 0.2  # not in the file: the space's own range
        study.tell(trial, 0.0)


def write(tmp_path, text):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("[params.lrr]\nlow = 1e-5\n", "unknown parameter(s) lrr; the active search spaces suggest: dropout, "
                                  "head_lr_multiplier, layer_decay, loss_weight_sts, lr, pooling, warmup"),
    ("[params.lr]\nlow = 1e-3\nhigh = 1e-5\n", "[params.lr]: inverted range: low 0.001 > high 1e-05"),
    ("[params.dropout]\nhigh = -0.1\n", "[params.dropout]: inverted range: low 0.0 > high -0.1"),
    ("[params.pooling]\nchoices = []\n", "[params.pooling]: empty choices"),
    ("[params.pooling]\nlow = 1\n", "[params.pooling]: pooling is categorical"),
    ("[params.lr]\nchoices = [1e-5]\n", "[params.lr]: lr is a float range"),
    ("[params.warmup]\nlog = true\n", "[params.warmup]: a log scale needs low > 0"),
    ("[params.lr]\nvalue = 1e-5\nlow = 1e-6\n", "'value' fixes the parameter; give it alone"),
    ("[params.pooling]\nvalue = \"max\"\n", "unknown pooling 'max'"),
])
def test_bad_space_files_are_refused_naming_file_and_parameter(capsys, tmp_path, text, message):
    path = write(tmp_path, text)
    code, out, err = show_space(capsys, *BASE, "--sampler", "rrobin", "--space-file", path)
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    if "unknown pooling" not in message:
        assert str(path) in err


def test_two_spaces_suggesting_one_parameter_are_refused():
    from core.plugin.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def platform_search_spaces(self):
            return [Component("again", lambda trial, base: {"warmup": trial.suggest_float("lr", 1e-5, 1e-3, log=True)})]

    base = RunConfig(tasks=("sst",), checkpoint="tiny", sampler="rrobin")
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(Plugin(), name="fixture")
    with pytest.raises(SpaceError, match="parameter 'lr' is suggested by two search spaces: 'core' \\(plugin "
                                         "search_space\\) and 'again' \\(plugin fixture\\)"):
        dry_run(base, active_spaces(RunParts(base, pm)), {})


def test_loss_weights_are_searched_for_every_task_but_the_first_and_only_when_multitask(capsys, tmp_path):
    _, out, _ = show_space(capsys, "--tasks", "sst", "--checkpoint", "tiny", "--sampler", "rrobin")
    assert "loss_weight" not in out
    base = RunConfig(tasks=("sst", "quora", "sts"), checkpoint="tiny", sampler="rrobin")
    rules = load_space_file(write(tmp_path, "[params.loss_weight_quora]\nvalue = 2.5\n"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        trial = study.ask()
        config = trial_config(base, spaces_of(base), SpaceTrial(trial, rules), "out")
        weights = config.task_loss_weights
        assert weights["sst"] == 1.0 and weights["quora"] == 2.5 and "loss_weight_sst" not in trial.params
        assert 0.1 <= trial.params["loss_weight_sts"] <= 50
        assert weights["sts"] == pytest.approx(trial.params["loss_weight_sts"], rel=1e-5)  # written with 6 digits
        study.tell(trial, 0.0)


def test_smart_contributes_its_space_when_enabled(capsys):
    _, out, _ = show_space(capsys, *BASE, "--sampler", "rrobin")
    assert "smart_weight" not in out
    code, out, _ = show_space(capsys, "--tasks", "sst,quora,sts", "--checkpoint", "tiny", "--sampler", "interleaved",
                              "--plugins", "smart", "--space-file", EXAMPLE.with_name("smart_and_ratios.toml"))
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"smart_weight", "smart_epsilon", "smart_step_size", "smart_bregman_weight"} <= set(lines)
    assert "plugin smart" in lines["smart_weight"] and "0.5 .. 20" in lines["smart_weight"]
    assert "fixed" in lines["smart_epsilon"] and "ratio_sst" in lines
    assert "fixed" in lines["loss_weight_sts"] and "fixed" in lines["loss_weight_quora"]


def test_smart_space_sets_the_regularizer_settings():
    base = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", plugins=("smart",))
    trial = optuna.create_study().ask()
    config = trial_config(base, spaces_of(base), SpaceTrial(trial, {}), "out")
    assert config.components["smart"]["weight"] == trial.params["smart_weight"]
    assert set(config.components["smart"]) == {"weight", "epsilon", "step_size", "bregman_weight"}
