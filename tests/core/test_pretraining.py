"""Further pretraining on the tiny encoder: outputs, the pretrain -> fine-tune chain, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import safetensors.torch
import torch

from core.base.errors import ConfigError
from core.build import run as run_
from core.build.parts import RunParts
from core.build.pretrain import prepare
from core.cli.main import main
from core.pretrain.config import PretrainConfig
from core.pretrain.loop import evaluate_heldout, train
from core.experiment.config import RunConfig
from core.train import loop as loop_


@pytest.fixture
def config(tmp_path, tiny_data_dir):
    return PretrainConfig(text=("sst", "quora"), checkpoint="tiny", limit=120, steps=8, batch_size=4, max_length=48,
                          lr=5e-3, warmup=0.0, heldout_every=5, eval_every=4, eval_batch_size=16, save_every=2,
                          log_every=2,
                          data_dir=str(tiny_data_dir), output_dir=str(tmp_path / "pretrained"), threads=1,
                          precision="fp32")


def pretrain(config):
    return train(prepare(config))


def test_pretraining_writes_a_checkpoint_folder_and_figures(config):
    metrics = pretrain(config)
    out = Path(config.output_dir)
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                                               "pretrain.json", "metrics.json", "last.pt", "tensorboard"}
    assert [h["step"] for h in metrics["heldout"]] == [0, 4, 8]
    assert metrics["before"]["step"] == 0 and metrics["after"]["step"] == 8
    assert metrics["after"]["perplexity"] < metrics["before"]["perplexity"] / 2  # it learns (a random tiny model)
    assert metrics["before"]["perplexity"] == pytest.approx(torch.tensor(metrics["before"]["loss"]).exp().item())
    assert metrics["head_from_checkpoint"] is False and metrics["corpus"]["texts"] == {"sst": 120, "quora": 240}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert PretrainConfig.load(out / "pretrain.json") == attrs.evolve(config, precision="fp32", masker="dynamic")


def test_tensorboard_has_mlm_loss_accuracy_lr_and_perplexity(config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pretrain(config)
    events = EventAccumulator(str(Path(config.output_dir) / "tensorboard")).Reload()
    assert {"train/loss/mlm", "train/masked_accuracy", "train/lr", "heldout/perplexity",
            "heldout/accuracy"} <= set(events.Tags()["scalars"])  # the loss, lr and held-out by the telemetry plugin
    assert [e.step for e in events.Scalars("train/lr")] == [2, 4, 6, 8]


def test_pretrain_then_finetune_from_the_folder(config, tmp_path, tiny_data_dir):
    pretrain(config)
    pretrained = safetensors.torch.load_file(Path(config.output_dir) / "model.safetensors")
    run_config = RunConfig(tasks=("sst", "sts"), checkpoint=config.output_dir, limit=16, batch_size=8, max_length=32,
                           epochs=1, sampler="rrobin", data_dir=str(tiny_data_dir),
                           output_dir=str(tmp_path / "finetuned"),
                           threads=1, precision="fp32", device="cpu")
    model = RunParts(run_config).model()
    for name, tensor in model.encoder.state_dict().items():  # the fine-tuning run starts from what was pretrained
        assert torch.equal(tensor, pretrained[f"bert.{name}"]), name
    best = loop_.train(run_.prepare(run_config))
    assert set(best) >= {"sst", "sts", "mean"}


def test_a_second_run_continues_the_head(config, tmp_path):
    pretrain(config)
    again = attrs.evolve(config, checkpoint=config.output_dir, output_dir=str(tmp_path / "again"), steps=2)
    run = prepare(again)
    assert run.head_from_checkpoint
    first = prepare(attrs.evolve(config, output_dir=str(tmp_path / "fresh")))
    assert not first.head_from_checkpoint
    metrics = train(run)
    assert metrics["before"]["perplexity"] < 0.5 * evaluate_heldout(first)["perplexity"]


def test_head_only_leaves_the_encoder_as_it_was(config):
    run = prepare(attrs.evolve(config, head_only=True, steps=3))
    encoder = {k: t.clone() for k, t in run.model.bert.state_dict().items()}
    head = {k: t.clone() for k, t in run.model.head_state().items()}
    train(run)
    assert all(torch.equal(t, encoder[k]) for k, t in run.model.bert.state_dict().items())
    assert any(not torch.equal(t, head[k]) for k, t in run.model.head_state().items())


@pytest.mark.integration
def test_killed_run_resumes_to_identical_weights(config, tmp_path):
    reference = attrs.evolve(config, output_dir=str(tmp_path / "reference"), eval_every=100)
    pretrain(reference)
    killed = attrs.evolve(reference, output_dir=str(tmp_path / "killed"))
    config_file = tmp_path / "killed.json"
    config_file.write_text(json.dumps(killed.to_dict()))
    root = str(Path(__file__).parents[2])
    result = subprocess.run([sys.executable, str(Path(root) / "tests" / "kill_pretrain.py"), str(config_file), "5"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    out = tmp_path / "killed"
    assert not (out / "model.safetensors").exists() and not list(out.glob(".*.tmp"))
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)  # the safe loader reads it
    assert state["step"] == 4  # saved every 2 steps; step 5 was lost with the process

    moved = out.rename(tmp_path / "moved")  # the folder as named now, not where the run began
    resumed = prepare(PretrainConfig(output_dir=str(moved)), resume=True)
    assert resumed.global_step == 4 and resumed.output_dir == moved
    metrics = train(resumed)
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert metrics["heldout"] == expected["heldout"]
    ours = safetensors.torch.load_file(moved / "model.safetensors")
    theirs = safetensors.torch.load_file(tmp_path / "reference" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_used_folder_is_refused(config, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's")
    with pytest.raises(ConfigError, match="is not empty and holds no platform run .notes.txt."):
        prepare(attrs.evolve(config, output_dir=str(other)))
    with pytest.raises(ConfigError, match="--resume: .* holds no pretraining run"):
        prepare(PretrainConfig(output_dir=str(other)), resume=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    pretrain(attrs.evolve(config, steps=1))
    with pytest.raises(ConfigError, match="already holds a run; pass --resume .* to continue it, or choose another"):
        prepare(config)


@pytest.mark.parametrize("args,message", [
    (["--masker", "everything"], "--masker: unknown masker 'everything'; available: dynamic, span, static, whole-word"),
    (["--text", "sst,nowhere.txt"], "--text: 'nowhere.txt' is neither a task"),
    (["--text", "sst,sst"], "--text names a source twice"),
    (["--span-p", "0"], "p"),
    (["--mask-token", "0.95"], "exceed 1"),
    (["--max-length", "1000"], "exceeds the checkpoint's max_position_embeddings 512"),
    (["--lr", "1e10"], "--lr must be <= 1.0: 10000000000.0"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--seed", "1e23"], "--seed must be an integer in 0..4294967295, got 100000000000000000000000"),
])
def test_bad_options_give_one_clear_message(capsys, tmp_path, tiny_data_dir, args, message):
    code = main(["pretrain", "--checkpoint", "tiny", "--limit", "50", "--steps", "1", "--threads", "1",
                 "--data-dir", str(tiny_data_dir), "--output-dir", str(tmp_path / "p"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_cli_pretrains_with_a_masker_setting(capsys, tmp_path, tiny_data_dir):
    out = tmp_path / "p"
    code = main(["pretrain", "--checkpoint", "tiny", "--text", "sst", "--limit", "100", "--steps", "2",
                 "--batch-size", "4", "--max-length", "32", "--heldout-every", "4", "--masker", "span",
                 "--span-max-words", "3", "--threads", "1", "--precision", "fp32", "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out MLM perplexity:" in printed and f"platform run --checkpoint {out}" in printed
    saved = json.loads((out / "pretrain.json").read_text())
    assert saved["masker"] == "span" and saved["components"] == {"span": {"max_words": 3}}


def test_options_given_with_resume_are_refused_by_name(capsys, tmp_path):
    from core.cli.main import main

    code = main(["pretrain", "--resume", str(tmp_path), "--steps", "9", "--span-p", "0.3"])
    err = capsys.readouterr().err
    assert code == 2 and "--steps, --span-p would change it" in err and "would change it" in err


def test_a_pretraining_folder_is_named_where_a_fine_tuning_run_or_a_checkpoint_was_expected(config, capsys, tmp_path,
                                                                                           data_dir):
    import shutil

    pretrain(attrs.evolve(config, steps=1))
    capsys.readouterr()  # its progress bar
    folder = Path(config.output_dir)
    # `platform run --resume` of it: its config.json is the checkpoint's, not a run configuration
    assert main(["run", "--resume", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"platform run: error: {folder} is a `platform pretrain` run folder, not a `platform run` one: continue it "
        f"with `platform pretrain --resume {folder}`, or fine-tune from it with `platform run --checkpoint "
        f"{folder}`\n")
    # a pretraining run that has not written its weights yet, as --checkpoint
    unfinished = tmp_path / "unfinished"
    shutil.copytree(folder, unfinished)
    (unfinished / "model.safetensors").unlink()
    assert main(["run", "--tasks", "sst", "--checkpoint", str(unfinished), "--limit", "8", "--data-dir",
                 str(data_dir), "--output-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        f"platform run: error: --checkpoint {unfinished}: a `platform pretrain` run folder without its weights yet "
        f"(no model.safetensors): finish it with `platform pretrain --resume {unfinished}`, then pass it again\n")
    # a pretrain.json cut short
    (unfinished / "pretrain.json").write_text('{"text": ["sst"')
    assert main(["pretrain", "--resume", str(unfinished)]) == 2
    assert capsys.readouterr().err == (
        f"platform pretrain: error: {unfinished / 'pretrain.json'}: not a readable pretraining configuration "
        "(Expecting ',' delimiter: line 1 column 16 (char 15))\n")
