"""The run folder: never written into unless it is the run's own; resume continues exactly or refuses."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from core.base import files as checkpoints
from core.base.errors import PlatformError
from core.build import trained as inference
from core.build.run import prepare
from core.cli.main import main
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
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


def test_overwrite_of_a_folder_holding_runs_below_a_stray_config_json_is_refused(capsys, tmp_path, tiny_config):
    """Two complete runs in subfolders, and a config.json of someone's beside them: --overwrite deletes nothing."""
    folder = tmp_path / "experiments"
    for name in ("a", "b"):
        train(prepare(attrs.evolve(tiny_config, tasks=("sst",), epochs=1, output_dir=str(folder / name))))
    (folder / "config.json").write_text('{"note": "my own settings"}\n')
    before = snapshot(folder)
    code, err = cli(capsys, "run", *tiny_args(tiny_config), "--output-dir", folder, "--overwrite")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"platform run: error: --output-dir {folder} is not empty and holds no platform run (a, b, config.json); "
        "choose a new or empty folder (nothing was changed)")
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


@pytest.mark.integration
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
    pm = make_plugin_manager(enabled=config.plugins)
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_evaluate_says_when_metrics_json_is_behind_best_pt(tiny_config, tmp_path, caplog):
    config = attrs.evolve(tiny_config, epochs=1)
    kill_run(config, tmp_path, "call", "write_metrics", 1)  # killed after the epoch's best.pt, before metrics.json
    folder = Path(config.output_dir)
    assert (folder / "best.pt").exists() and not (folder / "metrics.json").exists()
    behind = f"{folder / 'best.pt'} holds epoch 0, but {folder / 'metrics.json'} is missing: the run stopped while saving"
    with caplog.at_level("WARNING", logger="platform"):
        inference.evaluate_checkpoint(folder)
    assert behind in caplog.text and "--resume" in caplog.text
    caplog.clear()
    train(prepare(config, resume=True))
    with caplog.at_level("WARNING", logger="platform"):
        inference.evaluate_checkpoint(folder)
    assert "records epoch" not in caplog.text and "is missing" not in caplog.text


def test_evaluate_says_when_metrics_json_cannot_be_read(tiny_config, caplog):
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=1)
    train(prepare(config))
    folder = Path(config.output_dir)
    (folder / "metrics.json").write_text('{"best": {"epo')  # cut short
    with caplog.at_level("WARNING", logger="platform"):
        inference.evaluate_checkpoint(folder)
    assert (f"{folder / 'metrics.json'} cannot be read (a corrupt file?): the run's record of its best epoch is lost; "
            f"{folder / 'best.pt'} holds epoch 0 and is used as it is") in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("file,count", [("last.pt", 1), ("last.pt", 3), ("best.pt", 1)])
def test_killed_halfway_through_a_checkpoint_write_resumes_exactly(tiny_config, tmp_path, file, count):
    reference = train(prepare(attrs.evolve(tiny_config, output_dir=str(tmp_path / "reference"))))
    kill_run(tiny_config, tmp_path, "partial", file, count)
    folder = Path(tiny_config.output_dir)
    assert list(folder.glob(f".{file}.*.tmp")), "the kill came mid-write"
    for name in ("last.pt", "best.pt"):
        if (folder / name).exists():
            checkpoints.load(folder / name)  # never half a file under the real name
    final = train(prepare(tiny_config, resume=True))
    assert final == reference and not list(folder.glob(".*.tmp"))  # the resume removed the partial write


# --------------------------------------------------------------------------------------------------
# Nothing written outside the run folder, nothing of a user's lost, one run per folder
# --------------------------------------------------------------------------------------------------


def test_planted_links_at_temporary_names_are_never_followed(capsys, tmp_path, tiny_config):
    """A link planted where a fixed-name temporary used to be written leads nowhere: temporaries have
    unique names, created exclusively, and the target is replaced, not written through."""
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), epochs=2)
    stopped = prepare(config, stop_at_epoch(1))
    with pytest.raises(Stop):
        train(stopped)
    folder, outside = Path(config.output_dir), tmp_path / "outside.txt"
    outside.write_text("a user's file\n")
    for name in ("last.pt.tmp", "metrics.json.tmp", "best.pt.tmp", "config.json.tmp"):
        (folder / name).symlink_to(outside)
    (folder / "predictions" / "sst-dev-output.csv.tmp").symlink_to(outside)
    train(prepare(config, resume=True))
    code, _ = cli(capsys, "predict", folder)
    assert code == 0 and outside.read_text() == "a user's file\n"
    assert (folder / "metrics.json").is_file() and not (folder / "metrics.json").is_symlink()


def test_overwrite_clears_only_what_a_run_writes(capsys, finished):
    config, folder = finished
    (folder / "paper.tex").write_text("my draft\n")
    before = snapshot(folder)
    code, err = cli(capsys, "run", *tiny_args(config), "--epochs", "1", "--output-dir", folder, "--overwrite")
    assert code == 2 and err.strip().endswith(
        f"--overwrite would clear {folder}, which holds files no run writes (paper.tex); move them out of the folder, "
        "or choose another folder (nothing was changed)")
    assert snapshot(folder) == before


@pytest.mark.integration
def test_a_second_run_into_a_folder_in_use_is_refused(tiny_config):
    """A real second process, while this one holds the folder."""
    import subprocess
    import sys

    from core.experiment.folder import claim

    folder = Path(tiny_config.output_dir)
    lock = claim(folder)
    try:
        result = subprocess.run([sys.executable, "-m", "core.cli", "run", *tiny_args(tiny_config), "--epochs", "1",
                                 "--output-dir", str(folder)], capture_output=True, text=True, timeout=300,
                                cwd=Path(__file__).parents[2])
    finally:
        lock.release()
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"platform run: error: --output-dir {folder} is in use by another run, started before this one and not yet "
        "ended; wait for it to end, or choose another folder (nothing was changed)")
    assert list(folder.iterdir()) == []


def test_out_of_memory_is_one_line_with_what_to_lower(capsys, tiny_config):
    """A real allocation failure of torch's CPU allocator (a tensor of 2^45 bytes, asked for at the start of
    training by a fixture plugin), as a batch too large for the machine would meet."""
    import torch

    class Greedy:
        @hookimpl
        def platform_on_train_start(self, run):
            torch.empty(2**45, dtype=torch.uint8)

    pm = make_plugin_manager(enabled=())
    pm.register(Greedy(), name="greedy")
    code = main(["run", *tiny_args(tiny_config), "--epochs", "1", "--output-dir", tiny_config.output_dir], pm=pm)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("platform run: error: out of memory ([enforce fail") and "can't allocate memory" in line
    assert line.endswith("; lower --batch-size, --max-batch-tokens or --eval-batch-size")


def test_a_resume_of_a_run_in_progress_is_refused(tiny_config):
    """The lock is held for --resume too: a run folder locked by a run still going (here this process, through
    a descriptor of its own: flock locks conflict between descriptors) is not resumed beside it."""
    from core.experiment.folder import FolderLock

    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=1)
    train(prepare(config))
    folder = Path(config.output_dir)
    going = FolderLock(folder)
    going.acquire()
    try:
        with pytest.raises(PlatformError) as caught:
            prepare(config, resume=True)
    finally:
        going.release()
    assert str(caught.value) == (f"--resume {folder} is in use by another run, started before this one and not yet "
                                 "ended; wait for it to end, or choose another folder (nothing was changed)")


def test_default_folders_of_runs_started_in_the_same_second_differ(tmp_path, monkeypatch, tiny_config):
    from core.experiment.folder import finalize

    monkeypatch.chdir(tmp_path)  # runs/ of this test only
    config = attrs.evolve(tiny_config, output_dir=None, tasks=("sst",))
    folders = [finalize(config).output_dir for _ in range(3)]
    assert len(set(folders)) == 3 and all(Path(folder).is_dir() for folder in folders)
    assert folders[1] == folders[0] + "-2" or Path(folders[1]).name[:15] != Path(folders[0]).name[:15]


@pytest.fixture
def mounted(tmp_path):
    """Mount a file system of the given options on a new folder (root only: a real read-only folder, a real
    full disk); unmounted after the test."""
    import subprocess

    mounts = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount-{len(mounts)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=True)


def test_a_read_only_output_dir_is_refused_before_anything_is_loaded(capsys, mounted, tiny_config):
    folder = mounted("ro,size=1m") / "run"
    code, err = cli(capsys, "run", *tiny_args(tiny_config), "--output-dir", folder)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"platform run: error: --output-dir {folder} cannot "
                                                                 "be written (Read-only file system)")
    assert "tokenizing" not in err  # refused before the data was read


def test_a_full_disk_is_said_and_leaves_no_partial_file(capsys, mounted, tiny_config):
    folder = mounted("size=64k") / "run"
    code, err = cli(capsys, "run", *tiny_args(tiny_config), "--epochs", "1", "--output-dir", folder)
    assert code == 2 and "the disk is full" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not [p for p in folder.rglob("*.tmp")], "the partial temporary is removed"


# --------------------------------------------------------------------------------------------------
# Data that changed under a run
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def own_data(tmp_path, tiny_config):
    """A copy of the task files, for a test to edit."""
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(tiny_config.data_dir, folder)
    return folder


def test_edited_train_or_dev_files_are_refused_on_resume_and_a_test_file_is_reported(own_data, tiny_config, caplog):
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=2, data_dir=str(own_data))
    stopped = prepare(config, stop_at_epoch(1))
    with pytest.raises(Stop):
        train(stopped)
    recorded = json.loads((Path(config.output_dir) / "data.json").read_text())["files"]
    assert set(recorded) == {"ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv"}
    original = (own_data / "ids-sst-dev.csv").read_text()
    (own_data / "ids-sst-dev.csv").write_text(original.replace("\t4\n", "\t0\n", 1))  # one dev label edited
    with pytest.raises(PlatformError, match="the data changed since the run started: ids-sst-dev.csv \\(sst/dev\\)"):
        prepare(config, resume=True)
    (own_data / "ids-sst-dev.csv").write_text(original)
    train_file = own_data / "ids-sst-train.csv"
    kept = train_file.read_text()
    train_file.write_text(kept.replace("the", "a", 1))  # one training sentence edited
    with pytest.raises(PlatformError, match="the data changed since the run started: ids-sst-train.csv \\(sst/train\\)"):
        prepare(config, resume=True)
    train_file.write_text(kept)
    test = own_data / "ids-sst-test-student.csv"
    test.write_text(test.read_text() + "\n")
    train(prepare(config, resume=True))
    assert "ids-sst-test-student.csv changed since the run started (sst/test)" in caplog.text


def test_limit_keeps_its_sample_when_an_unrelated_row_is_deleted(own_data, tiny_config):
    from core.build.parts import RunParts

    config = attrs.evolve(tiny_config, tasks=("sst",), data_dir=str(own_data), limit=24)
    before = RunParts(config).data("train")["sst"].ids
    path = own_data / "ids-sst-train.csv"
    lines = path.read_text().splitlines(keepends=True)
    unrelated = next(i for i, line in enumerate(lines[1:], 1) if line.split("\t")[1] not in before)
    path.write_text("".join(lines[:unrelated] + lines[unrelated + 1:]))
    assert RunParts(config).data("train")["sst"].ids == before


# --------------------------------------------------------------------------------------------------
# Runs that go wrong: a diverging loss, a signal
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("poisoned, log_every, message", [
    (4, 1, "training stopped at step 5 (epoch 2): the training loss of task sst is nan"),  # at the next log point
    (2, 10, "training stopped at step 3 (epoch 1): the model's weights are no longer finite numbers"),  # before a save
])
def test_a_diverging_run_stops_naming_step_and_task_and_keeps_the_last_good_checkpoint(tiny_config, poisoned,
                                                                                       log_every, message):
    """Weights that stop being finite numbers (made so by a fixture plugin after a step, as a far too high rate
    does) stop the run at the next logged loss or before the next checkpoint, naming step and task: what
    last.pt holds is the last good step (3: 24 examples in batches of 8 make 3 steps an epoch)."""
    from core.train.checkpointing import NonFiniteError

    class Poison:
        @hookimpl
        def platform_on_after_step(self, run, step):
            if step == poisoned:
                with torch.no_grad():
                    next(run.model.encoder.parameters()).fill_(float("nan"))

    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=2, save_every=10, log_every=log_every)
    pm = make_plugin_manager(enabled=())
    pm.register(Poison(), name="poison")
    with pytest.raises(NonFiniteError) as info:
        train(prepare(config, pm))
    last = Path(config.output_dir) / "last.pt"
    if poisoned == 4:
        assert str(info.value) == f"{message}; {last} keeps step 3, the last one saved; lower --lr (or --loss-weights)"
        state = checkpoints.load(last)
        assert state["global_step"] == 3 and all(torch.isfinite(t).all() for t in state["model"].values())
    else:
        assert str(info.value) == (f"{message}; nothing was saved in {Path(config.output_dir)} yet; lower --lr (or "
                                   "--loss-weights)")
        assert not last.exists()


@pytest.mark.integration
def test_sigterm_stops_a_run_saying_where_it_stands_and_it_resumes(tiny_config):
    import signal
    import subprocess
    import sys
    import time

    folder = Path(tiny_config.output_dir)
    command = [sys.executable, "-m", "core.cli", "run", *tiny_args(tiny_config), "--epochs", "30", "--save-every", "1",
               "--output-dir", str(folder)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    deadline = time.time() + 240
    while not (folder / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 143, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1] == "terminated; everything written so far is kept (resume with --resume RUN_DIR)"
    assert lines[-2].startswith("stopped at epoch ") and "last.pt holds step " in lines[-2]
    state = checkpoints.load(folder / "last.pt")
    assert 0 < state["global_step"]
    from core.experiment.folder import saved_config

    resumed = prepare(saved_config(folder), resume=True)
    assert resumed.global_step == state["global_step"]
    resumed.close()


class Stop(Exception):
    pass


def stop_at_epoch(epoch: int):
    """A plugin manager whose fixture plugin stops the run as ``epoch`` starts (after the epoch before was saved)."""

    class Stopper:
        @hookimpl
        def platform_on_epoch_start(self, run, epoch):
            if epoch == stop_epoch:
                raise Stop

    stop_epoch = epoch
    pm = make_plugin_manager(enabled=())
    pm.register(Stopper(), name="stopper")
    return pm


def test_a_corrupt_config_json_is_one_line_on_resume(capsys, finished):
    _, folder = finished
    capsys.readouterr()  # its progress bars
    (folder / "config.json").write_text('{"tasks": ["sst"')
    code, err = cli(capsys, "run", "--resume", folder)
    assert code == 2 and err == (f"platform run: error: {folder / 'config.json'}: not a readable run configuration "
                                 "(Expecting ',' delimiter: line 1 column 17 (char 16))\n")
