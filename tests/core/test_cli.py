"""The ``platform`` command: help, bad input with one clear message, evaluate and predict."""

import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from core.cli.main import main


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


def _installed() -> tuple[list[str], list[str], list[str]]:
    """The installed plugins, opt-in and always on, and the samplers of the always-on ones (a run without
    --plugins), as the messages list them."""
    from importlib.metadata import entry_points

    from core.plugin.manager import is_opt_in, make_plugin_manager
    from core.plugin.registries import Registries

    modules = {point.name: point.load() for point in entry_points(group="platform")}
    opt_in = sorted(name for name, module in modules.items() if is_opt_in(module))
    samplers = sorted(Registries(make_plugin_manager(enabled=())).samplers.names())
    return opt_in, sorted(set(modules) - set(opt_in)), samplers


OPT_IN, ALWAYS_ON, SAMPLERS = _installed()


@pytest.mark.parametrize("args,message", [
    (["--tasks", "sst,nope"], "--tasks: unknown task 'nope'; available: cfimdb, quora, sst, sts"),
    (["--sampler", "shuffle"], f"--sampler: unknown sampler 'shuffle'; available: {', '.join(SAMPLERS)}"),
    (["--plugins", "smrt"], f"unknown plugin(s) in --plugins: smrt; available: {', '.join(OPT_IN)} (always on: "
                            f"{', '.join(ALWAYS_ON)})"),
    (["--tasks", "sts", "--mode", "pretrain"], "--mode pretrain freezes the encoder, and the heads of sts have no "
                                               "trainable parameters (a cosine head has none); use --mode finetune"),
    (["--checkpoint", "no-such-model!"],
     "unknown checkpoint 'no-such-model!': not a folder, a hub id (org/name), or one of: minilm-l6, tiny, small, "
     "mpnet-base"),
    (["--epochs", "0"], "--epochs must be >= 1: 0"),
    (["--limit", "-1"], "--limit must be positive, got -1"),
    (["--sampler", "interleaved", "--interleaved-ratios", "sst=0"],
     "--interleaved-ratios: bad entry 'sst=0'; expected TASK=POSITIVE_INT, e.g. 'sst=8,quora=32'"),
])
def test_bad_run_options_give_one_clear_message(capsys, tmp_path, tiny_data_dir, args, message):
    code, _, err = run_cli(capsys, "run", *TINY, "--data-dir", tiny_data_dir, "--output-dir", tmp_path / "r", *args)
    assert code == 2
    assert err.splitlines()[-1] == f"platform run: error: {message}" and "Traceback" not in err  # after progress bars
    assert not (tmp_path / "r").exists()


LR_RANGE = ("--lr must be in (0, 1] (AdamW moves every weight by about the learning rate each step; fine-tuning "
            "uses 1e-5 .. 1e-4), got ")


@pytest.mark.parametrize("args,message", [
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr", "1e10"], LR_RANGE + "10000000000.0"),
    (["--warmup", "nan"], "--warmup must be a finite number, got nan"),  # any float option
    (["--plugins", "smart", "--smart-weight", "inf"], "--smart-weight must be a finite number, got inf"),  # a plugin's
    (["--seed", "1e23"], "--seed must be an integer in 0..4294967295, got 100000000000000000000000"),
    (["--seed", "100000000000000000000000"], "--seed must be an integer in 0..4294967295, got "
                                             "100000000000000000000000"),
    (["--seed", "-1"], "--seed must be an integer in 0..4294967295, got -1"),
    (["--tasks", "sst,sts,sst"], "--tasks: 'sst' given twice in sst,sts,sst; name each once"),
    (["--max-length", "513"], "--max-length 513: checkpoint 'tiny' has position embeddings for 512 tokens "
                              "(max_position_embeddings of its config); give at most 512"),
])
def test_inputs_that_would_poison_or_crash_a_run_are_refused_up_front(capsys, tmp_path, data_dir, args, message):
    code, _, err = run_cli(capsys, "run", *TINY, "--data-dir", data_dir, "--output-dir", tmp_path / "r", *args)
    assert code == 2 and err == f"platform run: error: {message}\n"
    assert not (tmp_path / "r").exists()


def test_a_seed_beyond_64_bits_is_one_line_in_a_real_process(tmp_path, data_dir):
    """It was a traceback from torch.manual_seed ("Overflow when unpacking long long")."""
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-m", "core.cli", "run", *TINY, "--data-dir", str(data_dir),
                             "--output-dir", str(tmp_path / "r"), "--seed", "100000000000000000000000"],
                            capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("platform run: error: --seed must be an integer in 0..4294967295, got "
                             "100000000000000000000000\n")


def test_a_number_where_an_integer_is_expected_says_so(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", "--seed", "1.5"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "platform run: error: argument --seed: expected an integer, got '1.5'"


@pytest.mark.parametrize("below", [False, True])
def test_an_output_dir_that_is_a_file_is_refused(capsys, tmp_path, tiny_data_dir, below):
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    target = file / "run" if below else file
    code, _, err = run_cli(capsys, "run", *TINY, "--tasks", "sst", "--data-dir", tiny_data_dir, "--output-dir", target)
    where = f"{target}: {file} is a file" if below else f"{file} is a file"
    assert code == 2
    assert err == f"platform run: error: --output-dir {where}, not a folder; choose a folder for the run\n"
    code, _, err = run_cli(capsys, "run", "--resume", file)
    assert code == 2 and err == f"platform run: error: --resume {file} is a file, not a folder; pass the run folder\n"
    assert file.read_text() == "mine\n"


def test_missing_data_dir_says_where_it_looked(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", *TINY, "--data-dir", tmp_path / "nowhere", "--output-dir", tmp_path / "r")
    assert code == 2 and "no data folder found (looked at: --data-dir" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "--tasks", "sst,sts", *TINY, "--epochs", "1", "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(out)]) == 0
    return out


def test_evaluate_reproduces_the_best_dev_metrics(capsys, trained):
    best = json.loads((trained / "metrics.json").read_text())["best"]
    code, out, _ = run_cli(capsys, "evaluate", trained)
    assert code == 0
    assert f"sst {best['sst']:.4f}" in out and f"sts {best['sts']:.4f}" in out


def test_evaluate_any_file_of_the_task_format(capsys, trained, tmp_path, tiny_data_dir):
    lines = (tiny_data_dir / "ids-sst-dev.csv").read_text().splitlines()
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


def test_plugins_lists_hooks(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0 and "sst  [always on]" in out and "smart  [opt-in (--plugins smart)]" in out
    assert "hooks: platform_tasks" in out


def test_predict_into_a_file_is_refused(capsys, trained, tmp_path):
    file = tmp_path / "preds.csv"
    file.write_text("mine\n")
    code, _, err = run_cli(capsys, "predict", trained, "--out", file)
    assert code == 2
    assert err == (f"platform predict: error: --out {file} is a file, not a folder; choose a folder "
                   "(a new one is made)\n")
    assert file.read_text() == "mine\n"


@pytest.mark.parametrize("args,message", [
    (["--limit", "0"], "--limit must be a positive number of pairs, got 0"),
    (["--limit", "-5"], "--limit must be a positive number of pairs, got -5"),
    (["--batch-size", "0"], "--batch-size must be a positive number of sentences, got 0"),
    (["--batch-size", "-1"], "--batch-size must be a positive number of sentences, got -1"),
])
def test_bad_encode_options_give_one_clear_message(capsys, tiny_data_dir, args, message):
    code, out, err = run_cli(capsys, "encode", "--checkpoint", "tiny", "--data-dir", tiny_data_dir, *args)
    assert code == 2 and out == "" and err == f"platform encode: error: {message}\n"


def test_encode_with_a_limit_correlates_that_many_pairs(capsys, tiny_data_dir):
    code, out, _ = run_cli(capsys, "encode", "--checkpoint", "tiny", "--data-dir", tiny_data_dir, "--limit", "8",
                           "--batch-size", "3")
    assert code == 0 and out.startswith("tiny zero-shot cosine pearson on sts dev (mean pooling): ")


def test_config_file_in_toml_with_options_over_it(tmp_path):
    from core.base.settings import build
    from core.cli.main import read
    from core.experiment.config import RunConfig

    recipe = tmp_path / "recipe.toml"
    recipe.write_text('tasks = ["sst", "sts"]\nplugins = ["smart"]\nepochs = 3\nloss_weights = {sts = 20}\n\n'
                      "[components.smart]\nweight = 2.0\n")
    _, _, invocation = read(["run", "--config", str(recipe), "--epochs", "1", "--smart-steps", "2"])
    config = build(RunConfig, invocation.values)
    assert (config.tasks, config.plugins, config.epochs, config.loss_weights) == (("sst", "sts"), ("smart",), 1,
                                                                                   {"sts": 20.0})
    assert config.components == {"smart": {"weight": 2.0, "steps": 2}}  # the file's and the typed, merged


def test_an_earlier_runs_config_json_repeats_it_elsewhere(capsys, tiny_config, tmp_path):
    first = attrs.evolve(tiny_config, tasks=("sst",), epochs=1)
    first.save(tmp_path / "first.json")
    code, _, err = run_cli(capsys, "run", "--config", tmp_path / "first.json", "--output-dir", tmp_path / "again")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {**again, "output_dir": None} == {**json.loads((tmp_path / "first.json").read_text()), "output_dir": None}


@pytest.mark.parametrize("text,message", [
    ("epoch = 3\n", "--config {file}: unknown setting(s) epoch; known: "),
    ("epochs = \n", "--config {file}: not valid TOML: "),
    ("[components]\nsmart = 2\n", "--config {file}: components must be tables of settings, [components.NAME]"),
])
def test_a_bad_config_file_is_one_line_naming_it(capsys, tmp_path, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    code, _, err = run_cli(capsys, "run", "--config", file, "--checkpoint", "tiny")
    assert code == 2 and err.startswith("platform run: error: " + message.format(file=file))
