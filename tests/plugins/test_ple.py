"""plugins.methods.experts.ple: levels of shared and task-specific experts, the extraction's formula (one level:
CGC), which gates tally, where each task's gradient reaches, settings and its search space."""

from __future__ import annotations

import optuna
import pytest
import torch

from core.base.settings import build
from core.build.parts import RunParts
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import TOPOLOGIES
from core.plugin.registry import Registry
from core.experiment.config import RunConfig
from core.tasks.heads import CosineRegressor, PairClassifier, SentenceClassifier, TokenClassifier
from plugins.methods.experts import ple
from plugins.methods.experts.blocks import Gate, MixedHead
from plugins.methods.experts.ple import Extraction, PLEConfig, ple_heads, ple_space
from studies.runner import active_spaces
from studies.space import SpaceTrial, trial_config
from tests.plugins.expert_heads import TASKS, WIDTHS, inputs, randomise_gates


def heads(config: PLEConfig = PLEConfig(), seed: int = 0, random_gates: bool = True) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    built = ple_heads(config, TASKS, WIDTHS, dropout=0.0)
    if random_gates:
        randomise_gates(built)
    return built


def extraction_of(built: torch.nn.ModuleDict) -> Extraction:
    return built["sst"].mixture.extraction


def test_registers_an_opt_in_topology_with_settings_and_space():
    registry = Registry(TOPOLOGIES)
    for component in ple.platform_topologies():
        registry.add(component, "ple")
    component = registry["ple"]
    assert component.factory is ple_heads and component.settings is PLEConfig and component.space is ple_space
    assert component.help and ple.PLATFORM_OPT_IN is True and not component.default


def test_levels_shared_and_own_experts_gates_and_shapes():
    built = heads(PLEConfig(shared_experts=3, task_experts=2, levels=3, width=24))
    extraction = extraction_of(built)
    assert all(built[task].mixture.extraction is extraction for task in ("quora", "sts"))
    assert isinstance(built["ner"], TokenClassifier)  # reads every token: not extracted
    assert extraction.tasks == ["sst", "quora", "sts"] and len(extraction.levels) == 3
    for number, level in enumerate(extraction.levels, 1):
        assert len(level.shared) == 3 and set(level.own) == {"sst", "quora", "sts"}
        assert all(len(level.own[task]) == 2 for task in level.own)
        assert level.gates["sts"].labels == ["shared0", "shared1", "shared2", "own0", "own1"]
        assert level.gates["sts"].tag == f"ple/gates/level{number}/sts"
        assert level.shared.experts[0].inner.out_features == 24
    assert extraction.levels[0].shared_gate.labels[3:] == ["sst_own0", "sst_own1", "quora_own0", "quora_own1",
                                                           "sts_own0", "sts_own1"]
    assert extraction.levels[-1].shared_gate is None  # the last level feeds the heads alone
    u, v = inputs(batch=5)
    assert built["sst"](u).shape == (5, 5)
    assert built["quora"](u, v).shape == (5, 1) and built["sts"](u, v).shape == (5, 1)
    for task, kind_head in (("sst", SentenceClassifier), ("quora", PairClassifier), ("sts", CosineRegressor)):
        assert isinstance(built[task], MixedHead) and isinstance(built[task].head, kind_head)


def test_one_level_is_cgc_a_gate_over_the_shared_experts_and_the_tasks_own():
    built = heads(PLEConfig(levels=1, residual=False))
    level = extraction_of(built).levels[0]
    assert level.shared_gate is None
    x = inputs(batch=6)[0]
    weights = torch.softmax(level.gates["quora"].linear(x), dim=-1)  # (B, S + P)
    experts = [*level.shared.experts, *level.own["quora"].experts]
    expected = sum(weights[:, k:k + 1] * expert(x) for k, expert in enumerate(experts))
    torch.testing.assert_close(built["quora"].mixture(x), expected)


@pytest.mark.parametrize("residual", [True, False])
def test_two_levels_follow_the_formula(residual):
    """h_t^1 and h_s^1 from x, then h_t^2 from (h_t^1, h_s^1), computed expert by expert."""
    built = heads(PLEConfig(shared_experts=2, task_experts=2, levels=2, residual=residual))
    first, second = extraction_of(built).levels
    x = inputs(batch=5)[0]

    def gated(gate: Gate, state: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(gate.linear(state), dim=-1)
        return sum(weights[:, k:k + 1] * output for k, output in enumerate(outputs))

    shared = [expert(x) for expert in first.shared.experts]
    own = {task: [expert(x) for expert in first.own[task].experts] for task in ("sst", "quora", "sts")}
    h_sts = gated(first.gates["sts"], x, shared + own["sts"])
    h_shared = gated(first.shared_gate, x, shared + own["sst"] + own["quora"] + own["sts"])
    top = [expert(h_shared) for expert in second.shared.experts]
    top += [expert(h_sts) for expert in second.own["sts"].experts]
    expected = gated(second.gates["sts"], h_sts, top)
    torch.testing.assert_close(built["sts"].mixture(x), x + expected if residual else expected)


def test_experts_start_apart_shared_and_own():
    level = extraction_of(heads(PLEConfig(shared_experts=2, task_experts=2, levels=1))).levels[0]
    experts = [*level.shared.experts, *(expert for task in level.own for expert in level.own[task].experts)]
    x = inputs(batch=1)[0]
    outputs = [expert(x) for expert in experts]
    for i in range(len(experts)):
        for j in range(i + 1, len(experts)):
            assert not torch.equal(experts[i].inner.weight, experts[j].inner.weight), (i, j)
            assert not torch.equal(experts[i].outer.weight, experts[j].outer.weight), (i, j)
            assert (outputs[i] - outputs[j]).abs().max() > 1e-3, (i, j)


def test_gates_sum_to_one_and_only_the_batchs_task_gate_and_the_shared_gates_tally():
    built = heads(PLEConfig(levels=2))
    first, second = extraction_of(built).levels
    x = inputs(batch=8)[0]
    weights = first.gates["sst"](x, record=False)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(8), rtol=0, atol=1e-6)
    built.train()
    built["sst"](x)
    for level in (first, second):
        usage = level.gates["sst"].usage()
        assert list(usage) == ["shared0", "shared1", "own0"] and sum(usage.values()) == pytest.approx(1.0)
        assert level.gates["quora"].usage() == {} and level.gates["sts"].usage() == {}  # ran on sst's examples
    shared = first.shared_gate.usage()
    assert list(shared) == ["shared0", "shared1", "sst_own0", "quora_own0", "sts_own0"]
    assert sum(shared.values()) == pytest.approx(1.0)


def test_a_tasks_loss_reaches_other_tasks_lower_experts_through_the_shared_gate_not_their_last_ones():
    built = heads(PLEConfig(levels=2, residual=False))
    first, second = extraction_of(built).levels
    built.zero_grad(set_to_none=True)
    built["sst"](inputs()[0]).sum().backward()
    assert first.own["quora"].experts[0].inner.weight.grad.abs().sum() > 0  # via h_s^1 into level 2's shared experts
    assert first.gates["quora"].linear.weight.grad is None  # quora's branch feeds only quora's own level-2 experts
    assert second.own["quora"].experts[0].inner.weight.grad is None
    assert second.shared.experts[0].inner.weight.grad.abs().sum() > 0
    assert second.own["sst"].experts[0].inner.weight.grad.abs().sum() > 0


def test_state_dict_loads_back_and_keeps_the_extraction_shared():
    source, target = heads(seed=0), heads(seed=1, random_gates=False)
    target.load_state_dict(source.state_dict())
    u, v = inputs()
    torch.testing.assert_close(target["sts"](u, v), source["sts"](u, v))
    torch.testing.assert_close(target["sst"](u), source["sst"](u))
    assert extraction_of(target) is target["quora"].mixture.extraction


def test_no_task_reading_pooled_embeddings_warns_and_keeps_default_heads(caplog):
    built = ple_heads(PLEConfig(), TASKS[3:], WIDTHS, 0.0)
    assert isinstance(built["ner"], TokenClassifier) and "no task of this run reads pooled embeddings" in caplog.text


@pytest.mark.parametrize("values,message", [
    ({"levels": 0}, "--ple-levels must be positive, got 0"),
    ({"shared_experts": 0}, "--ple-shared-experts must be positive, got 0"),
    ({"task_experts": -1}, "--ple-task-experts must be positive, got -1"),
])
def test_bad_settings_are_refused_naming_the_option(values, message):
    with pytest.raises(ValueError, match=message):
        build(PLEConfig, values, prefix="ple-")


def test_its_space_sets_the_topology_settings_when_enabled():
    base = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", plugins=("ple",))
    spaces = active_spaces(RunParts(base, make_plugin_manager(enabled=base.plugins, third_party=False)))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    config = trial_config(base, spaces, SpaceTrial(trial, {}), "out")
    settings = config.components["ple"]
    assert settings == {"shared_experts": trial.params["ple_shared_experts"],
                        "task_experts": trial.params["ple_task_experts"], "levels": trial.params["ple_levels"],
                        "width": trial.params["ple_width"]}
    assert 1 <= settings["levels"] <= 3
    build(PLEConfig, settings, prefix="ple-")
