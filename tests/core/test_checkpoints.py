"""Run checkpoints load safely: a crafted pickle is refused by file name and nothing in it runs."""

import os

import pytest
import torch

from core.base import files as checkpoints
from core.cli.main import main
from core.experiment.config import RunConfig


class Payload:
    """Unpickling this object would create ``marker``: proof that a file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mknod, (self.marker,))


def craft(path, marker, **state):
    torch.save({"format": checkpoints.FORMAT, **state, "payload": Payload(marker)}, path)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "best.pt"
    craft(path, marker, model={})
    with pytest.raises(checkpoints.CheckpointFileError, match=f"refused to load {path}: it asks to import posix.mknod"):
        checkpoints.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "resume"])
def test_every_command_that_reads_a_run_refuses_a_crafted_file(tmp_path, capsys, command, tiny_data_dir):
    run, marker = tmp_path / "run", tmp_path / "ran"
    run.mkdir()
    RunConfig(checkpoint="tiny", output_dir=str(run), data_dir=str(tiny_data_dir)).save(run / "config.json")
    craft(run / ("last.pt" if command == "resume" else "best.pt"), marker, config={}, model={})
    args = ["run", "--resume", str(run)] if command == "resume" else [command, str(run)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "refused to load" in err and str(run) in err and "Traceback" not in err
    assert not marker.exists()


def test_a_bam_teacher_run_with_a_crafted_checkpoint_is_refused(tmp_path, tiny_config, capsys):
    teacher, marker = tmp_path / "teacher", tmp_path / "ran"
    teacher.mkdir()
    craft(teacher / "best.pt", marker, config=tiny_config.to_dict(), model={})
    code = main(["run", "--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--max-length", "16",
                 "--data-dir", tiny_config.data_dir, "--output-dir", str(tmp_path / "student"), "--plugins", "bam",
                 "--bam-teachers", f"sst={teacher}", "--precision", "fp32", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"refused to load {teacher / 'best.pt'}" in err and not marker.exists()


def test_rng_states_survive_the_safe_loader(tmp_path):
    import random

    import numpy as np

    random.random(), np.random.rand(), torch.rand(1)
    checkpoints.save(tmp_path / "state.pt", {"rng": checkpoints.rng_state()})
    draws = random.random(), float(np.random.rand()), float(torch.rand(1))
    checkpoints.set_rng_state(checkpoints.load(tmp_path / "state.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws


def test_a_damaged_file_is_named(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(checkpoints.CheckpointFileError, match=f"run checkpoint {path} is corrupt or unreadable"):
        checkpoints.load(path)
