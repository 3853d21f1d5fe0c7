"""The run folder: never written into unless it is the run's own; resume continues exactly or refuses."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from core.base import files as checkpoints
from core.build import trained as inference
from core.build.run import plugin_manager, prepare
from core.cli.main import main
from core.plugin.hookspecs import hookimpl
from core.train.loop import train
from tests.helpers import kill_run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def tiny_args(config):
    return ["--tasks", "sst,sts", "--checkpoint", "tiny", "--limit", "16", "--batch-size", "8", "--max-length", "24",
            "--threads", "1", "--sampler", "rrobin", "--precision", "fp32", "--device", "cpu",
            "--data-dir", config.data_dir]


@pytest.fixture
def finished(tiny_config):
    """A finished one-epoch run on two tasks."""
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), epochs=1)
    train(prepare(config))
    return config, Path(config.output_dir)


# --------------------------------------------------------------------------------------------------
# A new run
# --------------------------------------------------------------------------------------------------


def test_a_checkpoint_folder_is_never_written_into(capsys, tmp_path, tiny_config):
    folder = tmp_path / "my-bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 128, "num_hidden_layers": 2}))
    (folder / "model.safetensors").write_bytes(b"weights")
    before = snapshot(folder)
    for extra in ([], ["--overwrite"]):
        code, err = cli(capsys, "run", *tiny_args(tiny_config), "--output-dir", folder, *extra)
        assert code == 2 and f"--output-dir {folder} is not empty and holds no platform run" in err
    assert snapshot(folder) == before


def test_a_finished_run_without_last_pt_is_not_overwritten(capsys, finished, tiny_config):
    config, folder = finished
    (folder / "last.pt").unlink()
    before = snapshot(folder)
    code, err = cli(capsys, "run", *tiny_args(tiny_config), "--output-dir", folder)
    assert code == 2 and "already holds a run; pass --resume" in err and "--overwrite" in err
    assert snapshot(folder) == before


def test_overwrite_starts_an_earlier_run_again(capsys, finished, tiny_config):
    config, folder = finished
    (folder / "predictions" / "stale-dev-output.csv").write_text("old\n")
    code, _ = cli(capsys, "run", *tiny_args(tiny_config), "--epochs", "1", "--output-dir", folder, "--overwrite")
    assert code == 0
    assert not (folder / "predictions" / "stale-dev-output.csv").exists()
    assert json.loads((folder / "config.json").read_text())["limit"] == 16  # this run's, not the earlier one's (24)


def test_an_output_dir_that_is_a_file_is_refused(capsys, tmp_path, tiny_config):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    code, err = cli(capsys, "run", *tiny_args(tiny_config), "--output-dir", target)
    assert code == 2 and f"--output-dir {target} is a file" in err and target.read_text() == "mine\n"


# --------------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------------


def test_resume_without_last_pt_after_results_is_refused(capsys, finished):
    _, folder = finished
    (folder / "last.pt").unlink()
    before = snapshot(folder)
    code, err = cli(capsys, "run", "--resume", folder)
    assert code == 2 and "last.pt is missing, but the folder holds results (best.pt, metrics.json, predictions)" in err
    assert snapshot(folder) == before


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(tiny_config, tmp_path, caplog):
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=1, save_every=100)
    kill_run(config, tmp_path, "step", 1)
    folder = Path(config.output_dir)
    assert (folder / "config.json").exists() and not (folder / "last.pt").exists()
    with caplog.at_level("WARNING", logger="platform"):
        run = prepare(config, resume=True)
    assert "stopped before its first checkpoint (no last.pt); starting from epoch 0" in caplog.text
    reference = train(prepare(attrs.evolve(config, output_dir=str(tmp_path / "reference"))))
    assert train(run) == reference


def test_options_given_with_resume_are_refused_by_name(capsys, finished):
    _, folder = finished
    before = snapshot(folder)
    code, err = cli(capsys, "run", "--resume", folder, "--epochs", "3", "--tasks", "sts")
    assert code == 2
    assert "--tasks sst,sts (now: sts)" in err and "--epochs 1 (now: 3)" in err
    code, err = cli(capsys, "run", "--resume", folder, "--plugins", "smart", "--smart-weight", "2")
    assert code == 2 and "--plugins none (now: smart); --smart-* not set (now: weight=2.0)" in err
    assert snapshot(folder) == before


def test_resume_may_change_threads_and_data_dir(capsys, finished, tiny_config):
    _, folder = finished
    code, _ = cli(capsys, "run", "--resume", folder, "--threads", "1", "--data-dir", tiny_config.data_dir)
    assert code == 0


class CountSteps:
    steps = 0

    @hookimpl
    def platform_on_after_step(self):
        CountSteps.steps += 1


def test_resume_of_a_finished_run_changes_nothing(finished):
    """It restores everything last.pt holds, trains no step, and rewrites no result."""
    config, folder = finished
    saved = checkpoints.load(folder / "last.pt")
    files = snapshot(folder)
    pm = plugin_manager(config)
    pm.register(CountSteps())
    run = prepare(config, pm, resume=True)
    # everything last.pt holds is back in the live run
    assert (run.epoch, run.step_in_epoch, run.global_step, run.examples_seen) == (
        saved["epoch"], saved["step_in_epoch"], saved["global_step"], saved["examples_seen"])
    assert run.epoch == 1 and run.global_step > 0 and run.history == saved["history"] and run.best == saved["best"]
    assert all(torch.equal(v, saved["model"][k]) for k, v in run.model.state_dict().items())
    assert run.sampler.state_dict() == saved["sampler"]
    steps = [int(s["step"]) for s in run.optimizer.state_dict()["state"].values()]
    assert steps and steps == [int(s["step"]) for s in saved["optimizer"]["state"].values()]
    assert run.scheduler.state_dict() == saved["scheduler"]
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
    assert train(run) == saved["best"]
    assert CountSteps.steps == 0
    after = snapshot(folder)
    for name in ("best.pt", "last.pt", "metrics.json", "predictions/sst-dev-output.csv", "predictions/sts-test-output.csv"):
        assert after[name] == files[name], name


# --------------------------------------------------------------------------------------------------
# Killed while saving
# --------------------------------------------------------------------------------------------------


def test_killed_between_last_pt_and_best_pt_resumes_to_a_consistent_folder(tiny_config, tmp_path):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"))
    reference_dir = tmp_path / "reference"
    reference = train(prepare(attrs.evolve(config, output_dir=str(reference_dir))))
    kill_run(config, tmp_path, "save", "best.pt", 1)  # the first epoch's last.pt is written, its best.pt is not
    folder = Path(config.output_dir)
    assert (folder / "last.pt").exists() and not (folder / "best.pt").exists()
    final = train(prepare(config, resume=True))
    assert final == reference
    assert checkpoints.load(folder / "best.pt")["metrics"] == json.loads((folder / "metrics.json").read_text())["best"]
    assert snapshot(folder / "predictions") == snapshot(reference_dir / "predictions")


def test_evaluate_says_when_metrics_json_is_behind_best_pt(tiny_config, tmp_path, caplog):
    config = attrs.evolve(tiny_config, epochs=1)
    kill_run(config, tmp_path, "call", "write_metrics", 1)  # killed after the epoch's best.pt, before metrics.json
    folder = Path(config.output_dir)
    assert (folder / "best.pt").exists() and not (folder / "metrics.json").exists()
    behind = f"{folder / 'best.pt'} holds epoch 0, but {folder / 'metrics.json'} records epoch none as best"
    with caplog.at_level("WARNING", logger="platform"):
        inference.evaluate_checkpoint(folder)
    assert behind in caplog.text and "--resume" in caplog.text
    caplog.clear()
    train(prepare(config, resume=True))
    with caplog.at_level("WARNING", logger="platform"):
        inference.evaluate_checkpoint(folder)
    assert "records epoch" not in caplog.text


@pytest.mark.parametrize("file,count", [("last.pt", 1), ("last.pt", 3), ("best.pt", 1)])
def test_killed_halfway_through_a_checkpoint_write_resumes_exactly(tiny_config, tmp_path, file, count):
    reference = train(prepare(attrs.evolve(tiny_config, output_dir=str(tmp_path / "reference"))))
    kill_run(tiny_config, tmp_path, "partial", file, count)
    folder = Path(tiny_config.output_dir)
    assert (folder / f"{file}.tmp").exists(), "the kill came mid-write"
    for name in ("last.pt", "best.pt"):
        if (folder / name).exists():
            checkpoints.load(folder / name)  # never half a file under the real name
    final = train(prepare(tiny_config, resume=True))
    assert final == reference and not list(folder.glob("*.tmp"))


def test_a_corrupt_config_json_is_one_line_on_resume(capsys, finished):
    _, folder = finished
    capsys.readouterr()  # its progress bars
    (folder / "config.json").write_text('{"tasks": ["sst"')
    code, err = cli(capsys, "run", "--resume", folder)
    assert code == 2 and err == (f"platform run: error: {folder / 'config.json'}: not a readable run configuration "
                                 "(Expecting ',' delimiter: line 1 column 17 (char 16))\n")
