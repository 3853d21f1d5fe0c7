"""A tiny multitask run over small slices of all four tasks: training, evaluation, outputs, resume."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from core.base.errors import ConfigError
from core.build.run import prepare
from core.plugin.hookspecs import hookimpl
from core.train.loop import task_step, train
from tests.helpers import kill_run_at_step


def run_to_end(config):
    return train(prepare(config))


def test_tiny_multitask_run_writes_everything(tiny_config):
    best = run_to_end(tiny_config)
    out = Path(tiny_config.output_dir)
    assert set(best) >= {"sst", "cfimdb", "quora", "sts", "mean", "epoch"}
    assert 0.0 <= best["sst"] <= 1.0 and -1.0 <= best["sts"] <= 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["best"]["mean"] == max(h["mean"] for h in metrics["history"])
    assert all(h["peak_rss_mb"] > 0 and h["train_seconds"] >= 0 and h["eval_seconds"] >= 0 for h in metrics["history"])
    for name, split, rows in [("sst", "dev", 24), ("sst", "test", 24), ("quora", "dev", 24), ("sts", "test", 24)]:
        lines = (out / "predictions" / f"{name}-{split}-output.csv").read_text().splitlines()
        assert lines[0].startswith("id \t Predicted_") and len(lines) == rows + 1
        assert " , " in lines[1]
    assert not (out / "predictions" / "quora-test-output.csv").exists()  # no quora test file in the release
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["tasks"] == ["sst", "cfimdb", "quora", "sts"] and saved["checkpoint"] == "tiny"
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "config.json", "metrics.json"}


def test_tensorboard_has_losses_and_dev_metrics(tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_to_end(attrs.evolve(tiny_config, epochs=1))
    events = EventAccumulator(str(Path(tiny_config.output_dir) / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss/sst", "train/loss/quora", "train/lr", "train/examples_per_second", "dev/mean", "dev/sts"} <= tags


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_killed_run_resumes_to_identical_metrics(tiny_config, tmp_path, precision):
    tiny_config = attrs.evolve(tiny_config, precision=precision)
    steps_per_epoch = 3  # rrobin over 24 examples with batch 8
    reference = run_to_end(attrs.evolve(tiny_config, output_dir=str(tmp_path / "reference")))

    killed = attrs.evolve(tiny_config, output_dir=str(tmp_path / "killed"), save_every=1)
    kill_at = steps_per_epoch + 2  # the second epoch's second step, before its checkpoint: resume after step 1
    kill_run_at_step(killed, kill_at, tmp_path)
    out = tmp_path / "killed"
    assert (out / "last.pt").exists() and not list(out.glob(".*.tmp"))
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0], "the first epoch's results were written before the kill"

    resumed = prepare(attrs.evolve(tiny_config, output_dir=str(out)), resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1) and resumed.model.precision == precision
    final = train(resumed)
    assert final == reference


def test_existing_run_folder_is_not_overwritten(tiny_config):
    run_to_end(attrs.evolve(tiny_config, epochs=1))
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        prepare(tiny_config)


def test_pretrain_mode_freezes_encoder(tiny_config):
    run = prepare(attrs.evolve(tiny_config, tasks=("sst",), mode="pretrain", epochs=1))
    before = {k: v.clone() for k, v in run.model.encoder.state_dict().items()}
    head_before = run.model.heads["sst"].out.weight.clone()
    train(run)
    after = run.model.encoder.state_dict()
    assert all((before[k] == after[k]).all() for k in before)
    assert not (head_before == run.model.heads["sst"].out.weight).all()


def test_pretrain_with_nothing_trainable_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="no trainable parameters .* use --mode finetune"):
        prepare(attrs.evolve(tiny_config, tasks=("sts",), mode="pretrain"))


@pytest.mark.parametrize("update", ["sequential", "summed"])
def test_update_policies_step_counts(tiny_config, update):
    run = prepare(attrs.evolve(tiny_config, tasks=("sst", "sts"), update=update, epochs=1))
    train(run)
    steps = run.optimizer.state[next(iter(run.optimizer.state))]["step"]
    assert int(steps) == (6 if update == "sequential" else 3)


def test_a_batch_split_by_max_batch_tokens_has_the_whole_batch_gradient(tiny_config):
    """Dropout off: the chunks' weighted losses give the gradient of the whole batch, single
    sentences and pairs, and the hook sees each chunk."""
    config = attrs.evolve(tiny_config, tasks=("sst", "quora"), dropout=0.0)
    runs = {budget: prepare(attrs.evolve(config, max_batch_tokens=budget, output_dir=f"{config.output_dir}-{budget}"))
            for budget in (None, 40)}
    seen = []

    class Recorder:
        @staticmethod
        @hookimpl
        def platform_on_before_backward(task, terms):
            seen.append(task)

    runs[40].pm.register(Recorder())
    for task in ("sst", "quora"):
        indices = list(range(8))
        parts = {budget: task_step(run, task, indices) for budget, run in runs.items()}
        assert float(parts[40]["loss"]) == pytest.approx(float(parts[None]["loss"]), rel=1e-5)
        for (name, whole), chunked in zip(runs[None].model.named_parameters(), runs[40].model.parameters()):
            if whole.grad is not None:
                torch.testing.assert_close(chunked.grad, whole.grad, atol=1e-6, rtol=1e-4, msg=name)
        for run in runs.values():
            run.optimizer.zero_grad(set_to_none=True)
    assert seen.count("sst") > 1 and seen.count("quora") > 1  # split: one call per chunk


def test_a_head_of_the_wrong_shape_is_named_on_its_first_batch(tiny_config):
    """A kind whose head builds one output fewer than it declares: the first training batch stops the run
    with one message naming the task, the kind and its module, and both shapes."""
    from core.model.multitask import HeadShapeError
    from core.plugin.component import Component
    from core.plugin.manager import make_plugin_manager
    from plugins.standard.kinds import SingleClassification
    from tasks.sst import SST

    class Short(SingleClassification):
        name = "short-classification"

        def build_head(self, spec, widths, dropout):
            return self.classifier(spec, widths, spec.num_labels - 1, dropout)

    class Plugin:
        @hookimpl
        def platform_task_kinds(self):
            return [Component.of(Short())]

        @hookimpl
        def platform_tasks(self):
            return [Component.of(attrs.evolve(SST, name="sst-short", kind="short-classification"))]

    pm = make_plugin_manager(enabled=())
    pm.register(Plugin(), name="short")
    run = prepare(attrs.evolve(tiny_config, tasks=("sst-short",), epochs=1), pm)
    with pytest.raises(HeadShapeError) as caught:
        train(run)
    assert str(caught.value) == (
        f"task 'sst-short': the head of kind 'short-classification' (from {__name__}) returned a (8, 4) output for "
        "a batch of 8, expected (8, 5) (batch, kind.outputs(spec) = 5)")
