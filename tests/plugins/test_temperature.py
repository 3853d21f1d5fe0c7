"""plugins.methods.temperature: probabilities ∝ size^(1/T) (T = 1: the proportional sampler's; large T:
uniform), draws matching them over many steps, every-task steps, plans pure in (seed, epoch), bad T refused,
resume checks, its search space, and tiny runs that resume exactly."""

from __future__ import annotations

import math
import re

import attrs
import optuna
import pytest
import torch

from core.base.settings import build
from core.build.parts import RunParts
from core.build.run import prepare
from core.cli.main import main
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import SAMPLERS
from core.plugin.registry import Registry
from core.experiment.config import RunConfig
from core.train.loop import train
from plugins.methods import temperature
from plugins.methods.temperature import TemperatureConfig, TemperatureSampler, task_probabilities, temperature_space
from plugins.standard.samplers import Interleaved, Proportional
from studies.runner import active_spaces
from studies.space import SpaceTrial, trial_config
from tests.helpers import InterruptAt, Interrupted

SIZES = {"quora": 6000, "sst": 3000, "sts": 300}
TOTAL = sum(SIZES.values())


def sampler(sizes: dict[str, int] = SIZES, batch_size: int = 4, seed: int = 0, **settings) -> TemperatureSampler:
    return TemperatureSampler(TemperatureConfig(**settings), sizes, batch_size, seed, epochs=3)


def draw_frequencies(sampler: TemperatureSampler, epochs: int) -> tuple[dict[str, float], int]:
    """How often each task was drawn over the plans of ``epochs`` epochs, and the number of draws."""
    picks = [step[0][0] for epoch in range(epochs) for step in sampler.plan(epoch)]
    return {task: picks.count(task) / len(picks) for task in sampler.tasks}, len(picks)


def tolerance(p: float, draws: int) -> float:
    """Each step draws task t with probability p independently, so its count is Binomial(draws, p): its
    frequency has standard deviation sqrt(p (1 - p) / draws); 5 of them leave a true p outside with
    probability below 6e-7 per task."""
    return 5 * math.sqrt(p * (1 - p) / draws)


def test_registers_an_opt_in_sampler_with_settings_and_space():
    registry = Registry(SAMPLERS)
    for component in temperature.platform_samplers():
        registry.add(component, "temperature")
    component = registry["temperature"]
    assert component.factory is TemperatureSampler and component.settings is TemperatureConfig
    assert component.space is temperature_space and component.help and not component.default
    assert temperature.PLATFORM_OPT_IN is True


@pytest.mark.parametrize("t", [1.0, 2.0, 5.0, 0.5])
def test_probabilities_are_proportional_to_size_to_the_power_one_over_t(t):
    powered = {task: size ** (1 / t) for task, size in SIZES.items()}
    expected = {task: value / sum(powered.values()) for task, value in powered.items()}
    assert sampler(t=t).probabilities == pytest.approx(expected, rel=1e-12)
    assert sum(sampler(t=t).probabilities.values()) == pytest.approx(1.0, rel=1e-12)


def test_t_one_is_the_proportional_samplers_distribution():
    proportional = Proportional(None, SIZES, 4, 0, 3).probabilities(0)[0].tolist()  # size / total
    assert list(sampler(t=1.0).probabilities.values()) == pytest.approx(proportional, rel=1e-12)
    frequencies, draws = draw_frequencies(sampler(t=1.0), epochs=4)
    for task, size in SIZES.items():
        assert abs(frequencies[task] - size / TOTAL) < tolerance(size / TOTAL, draws), task


def test_draws_over_many_steps_match_the_probabilities_and_tell_temperatures_apart():
    hot = sampler(t=3.0)
    frequencies, draws = draw_frequencies(hot, epochs=4)
    assert draws == 4 * math.ceil(TOTAL / 4)  # an epoch: as many examples as the data, in batches of 4
    for task in SIZES:
        p = hot.probabilities[task]
        assert abs(frequencies[task] - p) < tolerance(p, draws), task
    # the check tells T = 3 from T = 1: a sampler drawing by size would fall outside some task's band
    proportional = {task: size / TOTAL for task, size in SIZES.items()}
    assert any(abs(hot.probabilities[task] - p) > tolerance(p, draws) + tolerance(hot.probabilities[task], draws)
               for task, p in proportional.items())
    assert frequencies["sts"] > 3 * SIZES["sts"] / TOTAL  # the small task is drawn far more than its size share


def test_a_very_large_temperature_is_nearly_uniform():
    cold = sampler(t=1e6)
    assert max(abs(p - 1 / 3) for p in cold.probabilities.values()) < 1e-5  # ln(6000/300) / 1e6 from uniform
    frequencies, draws = draw_frequencies(cold, epochs=4)
    assert all(abs(frequencies[task] - 1 / 3) < tolerance(1 / 3, draws) for task in SIZES)


def test_a_cap_counts_larger_tasks_at_the_cap():
    assert task_probabilities(SIZES, 1.0, cap=1000) == pytest.approx({"quora": 1000 / 2300, "sst": 1000 / 2300,
                                                                       "sts": 300 / 2300})
    assert sampler(t=2.0, cap=10_000).probabilities == sampler(t=2.0).probabilities  # a cap above every size


def test_the_plan_is_a_pure_function_of_seed_and_epoch():
    first, again = sampler(t=2.0, seed=5), sampler(t=2.0, seed=5)
    later = first.plan(2)
    assert first.plan(0) == again.plan(0) and first.plan(2) == later  # whatever was planned before
    assert first.plan(0) != first.plan(1) and first.plan(0) != sampler(t=2.0, seed=6).plan(0)
    every = sampler(t=2.0, seed=5, mode="every-task")
    assert every.plan(1) == sampler(t=2.0, seed=5, mode="every-task").plan(1) and every.plan(1) != every.plan(0)


def test_each_task_walks_a_fresh_permutation_of_its_examples_and_wraps():
    plan = sampler(t=1e6, batch_size=8).plan(0)  # sts (300) drawn ~390 times: it wraps many times
    for task, size in SIZES.items():
        seen = [i for step in plan for name, batch in step if name == task for i in batch]
        assert all(0 <= i < size for i in seen)
        for start in range(0, len(seen) - size + 1, size):  # each full pass is a permutation
            assert sorted(seen[start:start + size]) == list(range(size)), task


def test_every_task_steps_hold_every_task_with_batch_sizes_by_probability():
    every = sampler(t=2.0, batch_size=32, mode="every-task")
    p = every.probabilities
    assert every.batch_sizes == {task: max(1, round(32 * p[task] / p["quora"])) for task in SIZES}
    assert every.batch_sizes["quora"] == 32
    assert every.steps_per_epoch() == math.ceil(TOTAL / sum(every.batch_sizes.values()))
    plan = every.plan(0)
    assert len(plan) == every.steps_per_epoch()
    assert all([name for name, _ in step] == list(SIZES) for step in plan)
    assert all(len(batch) == every.batch_sizes[name] for step in plan for name, batch in step)
    # T = 1 gives the interleaved sampler's batch sizes; a large T every task the same
    interleaved = Interleaved(None, SIZES, 32, 0, 3).batch_sizes
    assert sampler(t=1.0, batch_size=32, mode="every-task").batch_sizes == interleaved
    assert set(sampler(t=1e6, batch_size=32, mode="every-task").batch_sizes.values()) == {32}


def test_a_batch_never_holds_more_examples_than_its_task():
    small = {"big": 50, "tiny": 3}
    for mode in ("one-task", "every-task"):
        plan = sampler(sizes=small, batch_size=64, t=1e3, mode=mode).plan(0)
        assert all(len(batch) <= small[name] for step in plan for name, batch in step)


@pytest.mark.parametrize("values,message", [
    ({"t": 0}, re.escape("--temperature-t must be a positive, finite number (1: proportional to size, larger: "
                         "closer to uniform), got 0")),
    ({"t": -2.0}, "--temperature-t must be a positive, finite number .*, got -2.0"),
    ({"t": float("inf")}, "--temperature-t must be a finite number, got inf"),
    ({"t": float("nan")}, "--temperature-t must be a finite number, got nan"),
    ({"cap": 0}, "--temperature-cap must be positive, got 0"),
    ({"mode": "all"}, "--temperature-mode must be in"),
])
def test_bad_settings_are_refused_naming_the_option(values, message):
    with pytest.raises(ValueError, match=message):
        build(TemperatureConfig, values, prefix="temperature-")


def test_a_bad_temperature_on_the_command_line_is_one_line(capsys, tmp_path, tiny_data_dir):
    code = main(["run", "--tasks", "sst,sts", "--checkpoint", "tiny", "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(tmp_path / "r"), "--plugins", "temperature", "--sampler", "temperature",
                 "--temperature-t", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("platform run: error: ") and "--temperature-t must be a positive, finite number" in err
    assert not (tmp_path / "r").exists()


def test_bad_sizes_and_batch_sizes_are_named():
    with pytest.raises(ValueError, match="sampler 'temperature': task\\(s\\) sts have no training examples"):
        sampler(sizes={"sst": 10, "sts": 0})
    with pytest.raises(ValueError, match="sampler 'temperature': no tasks to sample from"):
        sampler(sizes={})


def test_state_dict_round_trips_and_a_resume_with_another_temperature_is_refused():
    state = sampler(t=2.0).state_dict()
    assert state == {"sampler": "temperature", "sizes": SIZES, "batch_size": 4, "seed": 0, "t": 2.0, "cap": None,
                     "mode": "one-task"}
    sampler(t=2.0).load_state_dict(state)
    with pytest.raises(ValueError, match="t: 2.0 in the checkpoint, 3.0 in this run"):
        sampler(t=3.0).load_state_dict(state)


def test_its_space_searches_the_temperature_when_it_is_the_runs_sampler():
    base = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", plugins=("temperature",), sampler="temperature")
    spaces = active_spaces(RunParts(base, make_plugin_manager(enabled=base.plugins, third_party=False)))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    config = trial_config(base, spaces, SpaceTrial(trial, {}), "out")
    assert config.components["temperature"] == {"t": trial.params["temperature_t"]}
    assert 1.0 <= trial.params["temperature_t"] <= 10.0
    other = attrs.evolve(base, sampler="rrobin")
    assert "temperature" not in {space.name for space in active_spaces(RunParts(other, make_plugin_manager(
        enabled=other.plugins, third_party=False)))}


@pytest.mark.slow
@pytest.mark.parametrize("mode,update", [("one-task", "sequential"), ("every-task", "summed")])
def test_a_stopped_tiny_run_resumes_to_the_uninterrupted_runs_metrics(tiny_config, tmp_path, mode, update):
    config = attrs.evolve(tiny_config, plugins=("temperature",), sampler="temperature", update=update, save_every=1,
                          components={"temperature": {"t": 3.0, "mode": mode}}, output_dir=str(tmp_path / "reference"))
    reference_run = prepare(config)
    steps = reference_run.steps_per_epoch
    assert steps == (math.ceil(96 / 8) if mode == "one-task" else math.ceil(96 / 32))  # 4 tasks of 24 examples
    plan = reference_run.sampler.plan(0)
    assert {name for step in plan for name, _ in step} == set(tiny_config.tasks)
    reference = train(reference_run)
    assert set(reference) >= {*tiny_config.tasks, "mean"}

    stopped = attrs.evolve(config, output_dir=str(tmp_path / "stopped"))
    pm = make_plugin_manager(enabled=stopped.plugins)
    pm.register(InterruptAt(steps + 1))  # after the second epoch's first step, whose checkpoint is not written
    run = prepare(stopped, pm)
    with pytest.raises(Interrupted):
        train(run)
    run.close()
    resumed = prepare(stopped, resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 0)
    assert train(resumed) == reference
    final, expected = resumed.model.state_dict(), reference_run.model.state_dict()
    assert all(torch.equal(final[key], expected[key]) for key in expected)
