"""The mixture-of-experts topologies end to end on the tiny encoder: `--plugins mmoe` and `--plugins ple` train,
log their gates' usage to TensorBoard (read back from the event file), reload, and resume exactly."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import attrs
import pytest
import torch

from core.build.run import prepare
from core.build.trained import load_run
from core.plugin.manager import make_plugin_manager
from core.train.loop import train
from plugins.methods.experts.blocks import Gate, MixedHead
from tests.helpers import InterruptAt, Interrupted

TASKS = ("sst", "cfimdb", "quora", "sts")


def gate_scalars(folder: Path, prefix: str) -> dict[str, dict[int, dict[str, float]]]:
    """From the run's TensorBoard events: gate tag -> step -> expert -> mean weight."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    scalars: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for tag in events.Tags()["scalars"]:
        if tag.startswith(prefix):
            gate, _, expert = tag.rpartition("/")
            for event in events.Scalars(tag):
                scalars[gate][event.step][expert] = event.value
    return scalars


def check_usage(scalars: dict[int, dict[str, float]], experts: list[str], steps: int, task_gate: bool = True) -> None:
    """One gate's log: every expert at every step, weights summing to 1, no longer uniform after training. A
    task's gate is uniform at step 1: gates start at zero, and only its task's loss moves it, whose first update
    comes after the step's forward of that task (a shared gate moves with every task's update, within step 1)."""
    assert sorted(scalars) == list(range(1, steps + 1))
    for step, usage in scalars.items():
        assert sorted(usage) == sorted(experts) and sum(usage.values()) == pytest.approx(1.0, abs=1e-5), step
    if task_gate:
        assert list(scalars[1].values()) == pytest.approx([1 / len(experts)] * len(experts), abs=1e-7)
    assert max(abs(value - 1 / len(experts)) for value in scalars[steps].values()) > 1e-6


@pytest.mark.slow
def test_mmoe_trains_logs_each_tasks_gate_usage_and_reloads(train_tiny):
    run = train_tiny(*TASKS, plugins=("mmoe",), epochs=2, components={"mmoe": {"experts": 3, "width": 32}})
    assert set(run.best) >= {*TASKS, "mean"}
    steps = run.metrics["history"][-1]["step"]
    scalars = gate_scalars(run.folder, "mmoe/gates/")
    assert set(scalars) == {f"mmoe/gates/{task}" for task in TASKS}
    for task in TASKS:
        check_usage(scalars[f"mmoe/gates/{task}"], ["expert0", "expert1", "expert2"], steps)

    config, model, _ = load_run(run.folder)
    assert config.plugins == ("mmoe",) and config.components["mmoe"]["experts"] == 3
    experts = model.heads["sst"].mixture.experts
    assert all(model.heads[task].mixture.experts is experts for task in TASKS) and len(experts) == 3
    assert experts.experts[0].inner.out_features == 32
    assert model.heads["sts"].mixture.gate.linear.weight.abs().sum() > 0  # the gates learned, from zero


@pytest.mark.slow
def test_ple_trains_logs_task_and_shared_gates_and_reloads(train_tiny):
    run = train_tiny(*TASKS, plugins=("ple",), epochs=2, components={"ple": {"levels": 2, "width": 32}})
    assert set(run.best) >= {*TASKS, "mean"}
    steps = run.metrics["history"][-1]["step"]
    scalars = gate_scalars(run.folder, "ple/")
    assert set(scalars) == {f"ple/gates/level{level}/{task}" for level in (1, 2) for task in TASKS} | {
        "ple/shared_gates/level1"}
    for level in (1, 2):
        for task in TASKS:
            check_usage(scalars[f"ple/gates/level{level}/{task}"], ["shared0", "shared1", "own0"], steps)
    check_usage(scalars["ple/shared_gates/level1"], ["shared0", "shared1", *(f"{task}_own0" for task in TASKS)], steps,
                task_gate=False)

    config, model, _ = load_run(run.folder)
    assert config.plugins == ("ple",) and all(isinstance(model.heads[task], MixedHead) for task in TASKS)
    extraction = model.heads["sst"].mixture.extraction
    assert all(model.heads[task].mixture.extraction is extraction for task in TASKS) and len(extraction.levels) == 2


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["mmoe", "ple"])
def test_a_stopped_run_resumes_to_the_uninterrupted_runs_metrics_and_weights(tiny_config, tmp_path, plugin):
    config = attrs.evolve(tiny_config, plugins=(plugin,), save_every=1, output_dir=str(tmp_path / "reference"))
    reference_run = prepare(config)
    reference = train(reference_run)

    # 3 steps per epoch: stopped after the second epoch's second step, resumed from the first one's checkpoint
    stopped = attrs.evolve(config, output_dir=str(tmp_path / "stopped"))
    pm = make_plugin_manager(enabled=stopped.plugins)
    pm.register(InterruptAt(5))
    run = prepare(stopped, pm)
    with pytest.raises(Interrupted):
        train(run)
    run.close()
    resumed = prepare(stopped, resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    assert train(resumed) == reference
    final, expected = resumed.model.state_dict(), reference_run.model.state_dict()
    assert list(final) == list(expected) and all(torch.equal(final[key], expected[key]) for key in final)
    assert any(isinstance(module, Gate) for module in resumed.model.modules())


def test_mmoe_composes_with_every_task_temperature_steps_and_a_gradient_balancer(train_tiny):
    """The experts are shared parameters (in every head) and each gate is its task's own: FAMO aggregates the
    tasks' gradients of the experts and the encoder, and scales each gate's with its task's weight."""
    run = train_tiny("sst", "quora", "sts", plugins=("mmoe", "temperature", "famo"), sampler="temperature",
                     update="summed", components={"temperature": {"mode": "every-task", "t": 2.0}})
    assert set(run.best) >= {"sst", "quora", "sts", "mean"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run.folder / "tensorboard")).Reload().Tags()["scalars"]
    assert {f"balance/weight/{task}" for task in ("sst", "quora", "sts")} <= set(tags)
    assert {f"mmoe/gates/{task}/expert0" for task in ("sst", "quora", "sts")} <= set(tags)
    assert all(sum(gate_scalars(run.folder, f"mmoe/gates/{task}")[f"mmoe/gates/{task}"][1].values())
               == pytest.approx(1.0, abs=1e-5) for task in ("sst", "quora", "sts"))
