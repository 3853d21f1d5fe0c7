"""The ``platform`` command: help, bad input with one clear message, evaluate and predict."""

import json

import pytest

from core.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY = ["--checkpoint", "tiny", "--limit", "16", "--batch-size", "8", "--max-length", "24", "--threads", "1",
        "--sampler", "rrobin"]


def test_bare_command_lists_commands(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0
    for command in ("run", "pretrain", "evaluate", "predict", "encode", "plugins"):
        assert command in out


@pytest.mark.parametrize("args,message", [
    (["--tasks", "sst,nope"], "--tasks: unknown task 'nope'; available: cfimdb, quora, sst, sts"),
    (["--sampler", "shuffle"], "--sampler: unknown sampler 'shuffle'; available: annealed, interleaved"),
    (["--plugins", "smrt"], "unknown plugin(s) in --plugins: smrt; available: bam, rlayer, smart"),
    (["--tasks", "sts", "--mode", "pretrain"], "no trainable parameters"),
    (["--checkpoint", "no-such-model!"], "no-such-model!"),
    (["--epochs", "0"], "epochs"),
    (["--interleaved-ratios", "sst=0"], "sst=0"),
])
def test_bad_run_options_give_one_clear_message(capsys, tmp_path, data_dir, args, message):
    code, _, err = run_cli(capsys, "run", *TINY, "--data-dir", data_dir, "--output-dir", tmp_path / "r", *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_missing_data_dir_says_where_it_looked(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", *TINY, "--data-dir", tmp_path / "nowhere", "--output-dir", tmp_path / "r")
    assert code == 2 and "no data folder found (looked at: --data-dir" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "--tasks", "sst,sts", *TINY, "--epochs", "1", "--data-dir", str(data_dir),
                 "--output-dir", str(out)]) == 0
    return out


def test_evaluate_reproduces_the_best_dev_metrics(capsys, trained):
    best = json.loads((trained / "metrics.json").read_text())["best"]
    code, out, _ = run_cli(capsys, "evaluate", trained)
    assert code == 0
    assert f"sst {best['sst']:.4f}" in out and f"sts {best['sts']:.4f}" in out


def test_evaluate_any_file_of_the_task_format(capsys, trained, tmp_path, data_dir):
    lines = (data_dir / "ids-sst-dev.csv").read_text().splitlines()
    subset = tmp_path / "my-sst.csv"
    subset.write_text("\n".join(lines[:11]) + "\n")
    code, out, _ = run_cli(capsys, "evaluate", trained, "--file", subset, "--task", "sst")
    assert code == 0 and "sst " in out
    code, _, err = run_cli(capsys, "evaluate", trained, "--file", subset)
    assert code == 2 and "--task is needed" in err


def test_predict_writes_dev_and_test_files(capsys, trained, tmp_path):
    code, out, _ = run_cli(capsys, "predict", trained, "--out", tmp_path / "preds")
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "preds").iterdir())
    assert written == ["sst-dev-output.csv", "sst-test-output.csv", "sts-dev-output.csv", "sts-test-output.csv"]
    assert (tmp_path / "preds" / "sst-dev-output.csv").read_text() == (trained / "predictions" / "sst-dev-output.csv").read_text()


def test_corrupt_checkpoint_is_named(capsys, tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", bad)
    assert code == 2 and f"run checkpoint {bad} is corrupt or unreadable" in err


def test_resume_of_a_finished_run_changes_nothing(capsys, trained):
    before = (trained / "metrics.json").read_text()
    code, _, _ = run_cli(capsys, "run", "--resume", trained)
    assert code == 0 and json.loads((trained / "metrics.json").read_text())["best"] == json.loads(before)["best"]


def test_plugins_lists_hooks(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0 and "sst  [always on]" in out and "smart  [opt-in (--plugins smart)]" in out
    assert "hooks: platform_register_tasks" in out
