"""plugins.standard.samplers: coverage of every sampler's plans, determinism, resume checks, config errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.plugin.registries import SAMPLERS
from core.plugin.registry import Registry
from plugins.standard import samplers as plugin

NAMES = ("rrobin", "rrobin-pre", "interleaved", "proportional", "annealed")
SIZES = {"quora": 12007, "sst": 7544, "sts": 5240}


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry(SAMPLERS)
    for component in plugin.platform_samplers():
        registry.add(component, "samplers")
    return registry


def make(registry, name, sizes=SIZES, batch_size=32, seed=0, epochs=2, **config):
    component = registry[name]
    settings = component.settings(**config) if component.settings is not None else None
    return component.factory(settings, sizes, batch_size, seed, epochs)


def indices(plan, task) -> list[int]:
    return [i for step in plan for name, batch in step if name == task for i in batch]


def test_registers_every_sampler_with_help_and_config(registry):
    assert registry.names() == list(NAMES)
    assert all(component.help and component.plugin == "samplers" for component in registry)
    assert [component.name for component in registry.defaults()] == ["interleaved"]
    assert {component.name: component.settings for component in registry} == {
        "rrobin": None, "rrobin-pre": plugin.RRobinPreConfig, "interleaved": plugin.InterleavedConfig,
        "proportional": None, "annealed": plugin.AnnealedConfig}


@pytest.mark.parametrize("name", NAMES)
def test_plan_is_deterministic_and_varies_with_epoch_and_seed(registry, name):
    sampler = make(registry, name, seed=3)
    plan = sampler.plan(1)
    assert len(plan) == sampler.steps_per_epoch()
    assert plan == make(registry, name, seed=3).plan(1)
    assert plan != sampler.plan(0)
    assert plan != make(registry, name, seed=4).plan(1)
    assert all(isinstance(i, int) for step in plan for _, batch in step for i in batch)


@pytest.mark.parametrize("name", NAMES)
def test_empty_task_is_named(registry, name):
    with pytest.raises(ValueError, match="sst"):
        make(registry, name, sizes={"quora": 100, "sst": 0})


def test_rrobin_covers_smallest_task_size_of_each_task_disjointly(registry):
    sampler = make(registry, "rrobin")
    plan = sampler.plan(0)
    assert sampler.steps_per_epoch() == len(plan) == math.ceil(5240 / 32) == 164
    assert all([name for name, _ in step] == list(SIZES) for step in plan)
    assert all(len(batch) == 32 for step in plan[:-1] for _, batch in step)
    assert [len(batch) for _, batch in plan[-1]] == [5240 - 163 * 32] * 3
    for task, size in SIZES.items():
        seen = indices(plan, task)
        assert len(seen) == len(set(seen)) == 5240
        assert all(0 <= i < size for i in seen)


def test_rrobin_pre_phase_covers_the_rest_of_the_largest_task(registry):
    sampler = make(registry, "rrobin-pre")
    plan = sampler.plan(0)
    assert sampler.steps_per_epoch() == len(plan) == 212 + 164
    pre, rest = plan[:212], plan[212:]
    assert all(len(step) == 1 and step[0][0] == "quora" for step in pre)
    assert rest == make(registry, "rrobin").plan(0)  # same per-task permutation as rrobin
    pre_part, rr_part = indices(pre, "quora"), indices(rest, "quora")
    assert len(pre_part) == 6767 and not set(pre_part) & set(rr_part)
    assert sorted(pre_part + rr_part) == list(range(12007))


def test_rrobin_pre_named_task_and_unknown_task(registry):
    plan = make(registry, "rrobin-pre", task="sst").plan(0)
    assert sorted(indices(plan, "sst")) == list(range(7544))
    assert len(indices(plan, "quora")) == 5240
    with pytest.raises(ValueError, match="quora, sst, sts") as error:
        make(registry, "rrobin-pre", task="imdb")
    assert "imdb" in str(error.value)


def test_interleaved_batch_sizes_follow_task_sizes_and_cover_the_largest(registry):
    sizes = {"big": 141000, "mid": 8500, "small": 6000}
    sampler = make(registry, "interleaved", sizes=sizes, batch_size=64)
    plan = sampler.plan(0)
    assert sampler.steps_per_epoch() == len(plan) == math.ceil(141000 / 64)
    assert all([(name, len(batch)) for name, batch in step] == [("big", 64), ("mid", 4), ("small", 3)]
               for step in plan)  # every step full, wrapping included
    assert set(indices(plan, "big")) == set(range(141000))
    mid = indices(plan, "mid")
    assert sorted(mid[:8500]) == list(range(8500))  # one full permutation before wrapping
    wrapped = mid[8500:]  # 4 * 2204 - 8500 from a new permutation
    assert len(wrapped) == len(set(wrapped)) == 316 and wrapped != mid[:316]


def test_interleaved_explicit_ratios(registry):
    sampler = make(registry, "interleaved", ratios="sst=8, sts=4")
    assert sampler.batch_sizes == {"quora": 32, "sst": 8, "sts": 4}  # quora: proportional (largest)
    assert [len(batch) for _, batch in sampler.plan(0)[0]] == [32, 8, 4]
    assert sampler.steps_per_epoch() == math.ceil(12007 / 32)
    with pytest.raises(ValueError, match="imdb"):
        make(registry, "interleaved", ratios="sst=8,imdb=2")


@pytest.mark.parametrize("ratios,bad", [("sst=x", "'sst=x'"), ("sst=0", "'sst=0'"), ("sst", "'sst'"),
                                        ("=4", "'=4'"), ("sst=1,sst=2", "'sst'")])
def test_interleaved_ratios_validation(ratios, bad):
    with pytest.raises(ValueError, match=bad):
        plugin.InterleavedConfig(ratios=ratios)


def test_proportional_frequencies_match_sizes(registry):
    sizes = {"a": 6000, "b": 3000, "c": 1000}
    sampler = make(registry, "proportional", sizes=sizes, batch_size=4)
    plan = sampler.plan(0)
    assert len(plan) == 2500 and all(len(step) == 1 and len(step[0][1]) == 4 for step in plan)
    for task, size in sizes.items():
        p = size / 10000
        count = sum(step[0][0] == task for step in plan)
        assert abs(count / 2500 - p) < 4 * math.sqrt(p * (1 - p) / 2500)
        seen = indices(plan, task)
        first = seen[:size]
        assert len(set(first)) == len(first) and all(0 <= i < size for i in seen)  # walks a permutation


def test_annealed_alpha_schedule(registry):
    sampler = make(registry, "annealed", sizes={"a": 8000, "b": 510}, batch_size=10, epochs=1, alpha_floor=0.2)
    last = sampler.steps_per_epoch() - 1
    assert last == 850
    assert sampler.alpha(0) == 1.0
    assert sampler.alpha(last) == pytest.approx(0.2)
    assert sampler.alpha(last // 2) == pytest.approx(0.6)
    probs = sampler.probabilities(0)
    assert probs[0].tolist() == pytest.approx([8000 / 8510, 510 / 8510])


def test_annealed_frequencies_follow_the_schedule(registry):
    sampler = make(registry, "annealed", sizes={"a": 9000, "b": 1000}, batch_size=10, epochs=2, alpha_floor=0.0)
    counts = []
    for epoch in range(2):
        plan, probs = sampler.plan(epoch), sampler.probabilities(epoch)[:, 1]
        count = sum(step[0][0] == "b" for step in plan)
        expected, sd = probs.sum().item(), math.sqrt((probs * (1 - probs)).sum().item())
        assert abs(count - expected) < 4 * sd
        counts.append(count)
    assert sampler.probabilities(1)[-1].tolist() == pytest.approx([0.5, 0.5])  # alpha 0 at the last step
    assert counts[1] > counts[0] + 100  # the small task gains share as alpha falls


def test_annealed_floor_validation():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha_floor"):
            plugin.AnnealedConfig(alpha_floor=bad)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(registry, name):
    state = json.loads(json.dumps(make(registry, name).state_dict()))  # as saved in a checkpoint
    make(registry, name).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size: 32 in the checkpoint, 64 in this run"):
        make(registry, name, batch_size=64).load_state_dict(state)
    with pytest.raises(ValueError, match="sizes"):
        make(registry, name, sizes={**SIZES, "sst": 7000}).load_state_dict(state)


def test_state_dict_mismatches_of_sampler_config_and_epochs(registry):
    annealed = make(registry, "annealed").state_dict()
    with pytest.raises(ValueError, match="alpha_floor"):
        make(registry, "annealed", alpha_floor=0.3).load_state_dict(annealed)
    with pytest.raises(ValueError, match="epochs"):  # the schedule spans training
        make(registry, "annealed", epochs=5).load_state_dict(annealed)
    make(registry, "rrobin", epochs=5).load_state_dict(make(registry, "rrobin").state_dict())  # more epochs: fine
    with pytest.raises(ValueError, match="sampler: 'rrobin' in the checkpoint, 'proportional' in this run"):
        make(registry, "proportional").load_state_dict(make(registry, "rrobin").state_dict())
    with pytest.raises(ValueError, match="task"):
        make(registry, "rrobin-pre", task="sst").load_state_dict(make(registry, "rrobin-pre").state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_never_holds_more_examples_than_its_task(registry, name):
    """A batch size beyond a task's size takes each example once: before, an interleaved batch of 1,000,000
    drew a 16-example task 62,500 times over (seconds to plan, and a forward of a million examples)."""
    sizes = {"sst": 16, "sts": 10}
    sampler = make(registry, name, sizes=sizes, batch_size=1_000_000, epochs=1)
    plan = sampler.plan(0)
    assert len(plan) == 1 or name == "rrobin-pre"  # (the pre-phase takes a step of its own)
    for step in plan:
        for task, batch in step:
            assert 0 < len(batch) == len(set(batch)) <= sizes[task]


@pytest.mark.data
def test_a_huge_batch_size_trains_at_once(data_dir, tmp_path):
    """`platform run --batch-size 1000000` in a real process: one step of every example, in seconds."""
    root = Path(__file__).parents[2]
    command = [sys.executable, "-m", "core.cli", "run", "--tasks", "sst,sts", "--checkpoint", "tiny", "--limit", "16",
               "--max-length", "24", "--batch-size", "1000000", "--epochs", "1", "--threads", "1", "--device", "cpu",
               "--precision", "fp32", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["examples_seen"] == 32 and metrics["history"][0]["step"] == 1
