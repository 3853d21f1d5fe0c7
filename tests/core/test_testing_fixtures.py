"""core.testing.fixtures, the pytest plugin the distribution installs for plugin authors: a plugin package's
tests run on its fixtures with no conftest, and ``train_tiny`` trains a task of a module it registers."""

import shutil
import types
from pathlib import Path

import attrs
import pytest

from core.api import Component, TaskSpec, hookimpl

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "platform-sst2"


@pytest.mark.integration
def test_a_plugin_package_runs_its_tests_on_the_platforms_fixtures(pytester):
    """The sst2 example package, copied outside the repository (no conftest, no project settings), runs
    its own test file in a pytest process of its own, as its author runs it; the fixtures come from the
    installed distribution's ``pytest11`` entry point."""
    for name in ("pyproject.toml", "platform_sst2.py", "test_platform_sst2.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=3)
    assert "plugins: multitask-platform" in result.stdout.str()


def sentence_score_plugin() -> types.ModuleType:
    """An inline plugin module: SST's labels read as a 0-4 score, a task of another kind on the same files."""
    module = types.ModuleType("sst_score_plugin")
    spec = TaskSpec(name="sst-score", kind="single-regression", label_column="sentiment", label_range=(0.0, 4.0),
                    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv"}, text_columns=("sentence",))
    module.platform_tasks = hookimpl(lambda: [Component.of(spec)])
    return module


def test_train_tiny_trains_a_task_of_a_registered_module_for_an_epoch(train_tiny, tiny_data_dir):
    run = train_tiny("sst-score", register=[sentence_score_plugin()])
    assert set(run.best) == {"sst-score", "mean", "epoch"} and -1.0 <= run.best["sst-score"] <= 1.0
    assert [record["epoch"] for record in run.metrics["history"]] == [0] and run.metrics["best"] == run.best
    assert run.config.data_dir == str(tiny_data_dir) and run.config.checkpoint == "tiny"
    assert {path.name for path in run.folder.iterdir()} >= {"best.pt", "config.json", "metrics.json", "predictions"}


def test_train_tiny_takes_settings_and_skips_a_module_the_entry_points_loaded(train_tiny):
    import tasks.sts

    first = train_tiny("sts", register=[tasks.sts], epochs=2, limit=16)
    second = train_tiny("sts", register=[tasks.sts], epochs=2, limit=16)
    assert first.folder != second.folder and first.best == second.best  # a new folder each, the same run
    assert [record["epoch"] for record in first.metrics["history"]] == [0, 1]
    lines = (first.folder / "predictions" / "sts-test-output.csv").read_text().splitlines()
    assert len(lines) == 1 + 16


def test_tiny_run_config_is_a_one_epoch_cpu_run_on_the_tiny_files(tiny_run_config, tiny_data_dir, tmp_path):
    assert (tiny_run_config.checkpoint, tiny_run_config.epochs, tiny_run_config.device,
            tiny_run_config.precision) == ("tiny", 1, "cpu", "fp32")
    assert tiny_run_config.data_dir == str(tiny_data_dir) and tiny_run_config.output_dir == str(tmp_path / "run")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):  # a configuration is data: evolve it
        tiny_run_config.epochs = 3
