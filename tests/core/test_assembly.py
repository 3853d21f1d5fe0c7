"""core.build.parts: settings of a component that takes no part in the run are refused, by every way in
(the command line, a saved config.json, the Python API), naming the option and what would enable it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from core.base.errors import ConfigError
from core.build.parts import RunParts
from core.build.run import prepare
from core.cli.main import main
from core.experiment.config import RunConfig

TINY = ["--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--max-length", "24", "--threads", "1"]


@pytest.mark.parametrize("args,message", [
    (["--smart-weight", "2"],
     "--smart-weight is a setting of regularizer 'smart' from plugin 'smart', which is not enabled: "
     "add --plugins smart"),
    (["--plugins", "bam", "--smart-weight", "2", "--smart-steps", "2"],
     "--smart-weight, --smart-steps are settings of regularizer 'smart' from plugin 'smart', which is not enabled: "
     "add --plugins bam,smart"),
    (["--bam-teachers", "sst=runs/x"],
     "--bam-teachers is a setting of regularizer 'bam' from plugin 'bam', which is not enabled: add --plugins bam"),
    (["--sampler", "rrobin", "--interleaved-ratios", "sst=8"],
     "--interleaved-ratios is a setting of sampler 'interleaved', which is not the run's (--sampler rrobin): "
     "use --sampler interleaved, or leave --interleaved-ratios out"),
    (["--annealed-alpha-floor", "0.2"],  # the default sampler is interleaved
     "--annealed-alpha-floor is a setting of sampler 'annealed', which is not the run's (--sampler interleaved): "
     "use --sampler annealed, or leave --annealed-alpha-floor out"),
    (["--rlayer-width", "64"],
     "--rlayer-width is a setting of topology 'rlayer' from plugin 'rlayer', which is not enabled: "
     "add --plugins rlayer"),
    (["--topology", "independent", "--rlayer-width", "64"],
     "--rlayer-width is a setting of topology 'rlayer' from plugin 'rlayer', which is not enabled: "
     "add --plugins rlayer --topology rlayer"),
    (["--plugins", "rlayer", "--topology", "independent", "--rlayer-width", "64"],
     "--rlayer-width is a setting of topology 'rlayer', which is not the run's (--topology independent): "
     "use --topology rlayer, or leave --rlayer-width out"),
])
def test_settings_of_a_component_not_in_the_run_are_refused_by_name(capsys, tmp_path, tiny_data_dir, args, message):
    code = main(["run", *TINY, "--data-dir", str(tiny_data_dir), "--output-dir", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err == f"platform run: error: {message}\n"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_same_settings_are_taken_when_their_component_is_enabled(tiny_config):
    config = attrs.evolve(tiny_config, tasks=("sst",), plugins=("smart",), sampler="interleaved", epochs=1,
                          components={"smart": {"weight": 2.0}, "interleaved": {"ratios": "sst=4"}})
    run = prepare(config)
    assert run.regularizers["smart"].config.weight == 2.0
    assert [len(indices) for task, indices in run.sampler.plan(0)[0]] == [4]  # not --batch-size 8
    run.close()


@pytest.mark.integration
def test_the_command_line_refuses_in_a_subprocess_without_a_traceback(tmp_path, tiny_data_dir):
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-m", "core.cli", "run", *TINY, "--data-dir", str(tiny_data_dir),
                             "--output-dir", str(tmp_path / "run"), "--smart-weight", "2"],
                            capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "platform run: error: --smart-weight is a setting of regularizer 'smart' from plugin 'smart', which is not "
        "enabled: add --plugins smart"]


def test_a_saved_configuration_with_settings_of_a_disabled_plugin_is_refused_on_resume(capsys, tiny_config):
    folder = Path(tiny_config.output_dir)
    folder.mkdir()
    attrs.evolve(tiny_config, components={"bam": {"temperature": 2.0}}).save(folder / "config.json")
    code = main(["run", "--resume", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err == ("platform run: error: --bam-temperature is a setting of regularizer 'bam' from plugin "
                                 "'bam', which is not enabled: add --plugins bam\n")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]


def test_the_python_api_refuses_too(tiny_config):
    with pytest.raises(ConfigError, match="^--interleaved-ratios is a setting of sampler 'interleaved'"):
        prepare(attrs.evolve(tiny_config, components={"interleaved": {"ratios": "sst=8"}}))


def test_settings_of_a_component_nobody_registers_are_refused(tiny_config):
    config = attrs.evolve(tiny_config, components={"mixup": {"alpha": 0.2}})
    with pytest.raises(ConfigError) as info:
        RunParts(config).check_components()
    assert str(info.value) == ("--mixup-alpha is a setting of 'mixup', which no installed plugin provides as a "
                               "sampler, regularizer, model transform, topology, balancer or masker (see `platform "
                               "plugins`)")


def test_check_components_returns_the_active_settings_with_their_defaults():
    config = RunConfig(plugins=("smart",), sampler="annealed", components={"smart": {"weight": 2.0}})
    settings = RunParts(config).check_components()
    assert set(settings) == {"annealed", "smart"}  # the independent topology has no settings
    assert settings["annealed"] == {"alpha_floor": 0.5} and settings["smart"]["weight"] == 2.0
    assert settings["smart"]["steps"] == 1  # a default, filled in
    json.dumps(settings)  # as a study records them
