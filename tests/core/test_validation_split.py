"""--validation-split: rows held out of the train files, selection on them, dev once at the end."""

import json
from pathlib import Path

import attrs
import pytest

from core.base.errors import ConfigError, PlatformError
from core.base.settings import build
from core.build import run as run_
from core.build.parts import RunParts
from core.build.trained import evaluate_checkpoint
from core.cli.main import main
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.experiment.config import RunConfig, load_data
from core.tasks.files import read_rows
from core.tasks.splits import VALIDATION, held_out, sample, split_rows
from core.train import loop as loop_
from tests.helpers import kill_run_at_step


def test_held_out_rows_are_fixed_whatever_the_size_of_the_fraction_rounding():
    assert held_out(100, 0.1) == held_out(100, 0.1) and len(held_out(100, 0.1)) == 10
    assert held_out(100, 0.1) == sorted(held_out(100, 0.1))
    assert len(held_out(10, 0.001)) == 1 and len(held_out(10, 0.99)) == 9  # one held, one kept at least


def test_train_and_validation_partition_the_file_and_limit_samples_each(tiny_config):
    task = RunParts(tiny_config).tasks["sst"]
    ids = [f"row-{i}" for i in range(200)]
    train = split_rows(task, "train", ids, None, 0.25, Path("f"))
    validation = split_rows(task, VALIDATION, ids, None, 0.25, Path("f"))
    assert len(validation) == 50 and not set(train) & set(validation) and sorted(train + validation) == list(range(200))
    limited = split_rows(task, VALIDATION, ids, 8, 0.25, Path("f"))
    assert len(limited) == 8 and set(limited) <= set(validation)  # a subset of the same held-out rows
    assert split_rows(task, "train", ids, 8, 0.0, Path("f")) == sample(ids, 8)  # off: the rows of before
    assert split_rows(task, "dev", ids, None, 0.25, Path("f")) == list(range(200))  # dev is never split
    with pytest.raises(PlatformError, match="no validation split without --validation-split"):
        split_rows(task, VALIDATION, ids, None, 0.0, Path("f"))


def test_a_run_reads_the_held_out_rows_as_validation_the_rest_as_train(tiny_config):
    config = attrs.evolve(tiny_config, limit=None, validation_split=0.1, tasks=("sts",))
    tokenizer = RunParts(config).tokenizer
    tasks = RunParts(config).tasks
    train, validation = (load_data(config, tasks, tokenizer, split)["sts"] for split in ("train", VALIDATION))
    file_ids = read_rows(tasks["sts"], Path(config.data_dir) / "sts-train.csv", labelled=True).ids
    assert not set(train.ids) & set(validation.ids) and len(train) + len(validation) == len(file_ids)
    assert len(validation) == round(0.1 * len(file_ids))
    other_seed = attrs.evolve(config, seed=1)
    assert load_data(other_seed, tasks, tokenizer, VALIDATION)["sts"].ids == validation.ids


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_a_fraction_outside_0_1_is_refused_naming_the_option(value):
    with pytest.raises(ConfigError, match="--validation-split must be"):
        build(RunConfig, {"validation_split": value})


class Splits:
    """Records every evaluation's split and the metrics each epoch reports."""

    def __init__(self):
        self.evaluated, self.epochs = [], []

    @hookimpl
    def platform_on_evaluate_end(self, split, metrics):
        self.evaluated.append((split, dict(metrics)))

    @hookimpl
    def platform_on_epoch_end(self, metrics):
        self.epochs.append(dict(metrics))


@pytest.fixture(scope="module")
def validated(tmp_path_factory, tiny_data_dir):
    """A tiny two-epoch run that holds out a quarter of each train file (limited to 24 rows each)."""
    out = tmp_path_factory.mktemp("validated") / "run"
    config = RunConfig(tasks=("sst", "quora", "sts"), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16,
                       max_length=32, epochs=2, lr=1e-3, sampler="rrobin", data_dir=str(tiny_data_dir),
                       output_dir=str(out), threads=1, device="cpu", precision="fp32", validation_split=0.25)
    pm, splits = make_plugin_manager(enabled=config.plugins), Splits()
    pm.register(splits)
    run = run_.prepare(config, pm)
    best = loop_.train(run)
    return config, run, best, splits


def test_epochs_are_evaluated_and_chosen_on_validation_dev_once_at_the_end(validated):
    config, run, best, splits = validated
    assert [split for split, _ in splits.evaluated] == ["validation", "validation", "dev"]
    assert splits.epochs == [metrics for _, metrics in splits.evaluated[:2]]  # epochs report validation
    assert len(run.validation_data["sst"]) == 24 and len(run.dev_data["sst"]) == 24
    metrics = json.loads((Path(config.output_dir) / "metrics.json").read_text())
    assert metrics["selected_on"] == "validation" and metrics["best"] == best
    assert best["mean"] == max(h["mean"] for h in metrics["history"])
    assert [h["mean"] for h in metrics["history"]] == [m["mean"] for m in splits.epochs]
    assert metrics["dev"] == splits.evaluated[-1][1] == run.dev and metrics["dev"] != best


def test_the_run_folder_holds_validation_and_dev_predictions_and_says_what_selected(validated):
    config, run, best, _ = validated
    out = Path(config.output_dir)
    for name, split in [("sst", "validation"), ("sts", "validation"), ("sst", "dev"), ("quora", "dev"),
                        ("sts", "test")]:
        lines = (out / "predictions" / f"{name}-{split}-output.csv").read_text().splitlines()
        assert len(lines) == 25
    validation_ids = {line.split(" , ")[0] for line in
                      (out / "predictions" / "sst-validation-output.csv").read_text().splitlines()[1:]}
    assert validation_ids == set(run.validation_data["sst"].ids) and not validation_ids & set(run.train_data["sst"].ids)
    from core.base import files as checkpoints

    saved = checkpoints.load(out / "best.pt")
    assert saved["selected_on"] == "validation" and saved["metrics"] == best


def test_evaluate_reproduces_dev_and_validation_of_the_chosen_model(validated, capsys):
    config, run, best, _ = validated
    assert evaluate_checkpoint(Path(config.output_dir)) == run.dev
    assert evaluate_checkpoint(Path(config.output_dir), split=VALIDATION) == {k: v for k, v in best.items()
                                                                                if k != "epoch"}
    assert main(["evaluate", config.output_dir, "--split", "validation"]) == 0
    assert f"validation: sst {best['sst']:.4f}" in capsys.readouterr().out


def test_evaluate_refuses_validation_of_a_run_without_and_split_beside_file(validated, tmp_path, tiny_data_dir, capsys):
    config, *_ = validated
    plain = attrs.evolve(config, validation_split=0.0, epochs=1, tasks=("sst",), output_dir=str(tmp_path / "plain"))
    loop_.train(run_.prepare(plain))
    assert main(["evaluate", plain.output_dir, "--split", "validation"]) == 2
    assert "held out no validation rows (it was trained without --validation-split); use --split dev" in \
        capsys.readouterr().err
    assert main(["evaluate", config.output_dir, "--split", "validation",
                 "--file", str(tiny_data_dir / "ids-sst-dev.csv"), "--task", "sst"]) == 2
    assert "both say what to evaluate: give one of them" in capsys.readouterr().err
    assert json.loads((Path(plain.output_dir) / "metrics.json").read_text())["selected_on"] == "dev"


@pytest.mark.integration
def test_a_killed_run_with_a_validation_split_resumes_to_the_same_end(tiny_config, tmp_path):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), validation_split=0.25)
    reference = run_.prepare(attrs.evolve(config, output_dir=str(tmp_path / "reference")))
    loop_.train(reference)
    killed = attrs.evolve(config, output_dir=str(tmp_path / "killed"), save_every=1)
    kill_run_at_step(killed, 5, tmp_path)  # 24 rows in batches of 8: 3 steps an epoch; last.pt after step 4
    resumed = run_.prepare(killed, resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    assert loop_.train(resumed) == reference.best and resumed.dev == reference.dev
    ends = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("reference", "killed")]
    assert ends[0]["history"][0].keys() == ends[1]["history"][0].keys()
    assert [{k: v for k, v in end.items() if k != "history"} for end in ends][0] == \
        {k: v for k, v in ends[1].items() if k != "history"}
