"""plugins.methods.experts.mmoe: shared experts apart, a softmax gate per task, the mixture's formula, the gates'
tally, gradients, settings and its search space."""

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
from plugins.methods.experts import mmoe
from plugins.methods.experts.blocks import MixedHead
from plugins.methods.experts.mmoe import MMoEConfig, mmoe_heads, mmoe_space
from studies.runner import active_spaces
from studies.space import SpaceTrial, trial_config
from tests.plugins.expert_heads import H, TASKS, WIDTHS, inputs, randomise_gates


def heads(config: MMoEConfig = MMoEConfig(), seed: int = 0) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    return mmoe_heads(config, TASKS, WIDTHS, dropout=0.0)


def test_registers_an_opt_in_topology_with_settings_and_space():
    registry = Registry(TOPOLOGIES)
    for component in mmoe.platform_topologies():
        registry.add(component, "mmoe")
    component = registry["mmoe"]
    assert component.factory is mmoe_heads and component.settings is MMoEConfig and component.space is mmoe_space
    assert component.help and mmoe.PLATFORM_OPT_IN is True and not component.default


def test_shapes_heads_over_the_mixture_and_a_token_task_keeps_its_head():
    built = heads(MMoEConfig(experts=3, width=24))
    u, v = inputs(batch=5)
    assert built["sst"](u).shape == (5, 5)
    assert built["quora"](u, v).shape == (5, 1)
    assert built["sts"](u, v).shape == (5, 1)
    assert isinstance(built["ner"], TokenClassifier) and built["ner"](torch.randn(5, 7, H)).shape == (5, 7, 3)
    for task, kind_head in (("sst", SentenceClassifier), ("quora", PairClassifier), ("sts", CosineRegressor)):
        assert isinstance(built[task], MixedHead) and isinstance(built[task].head, kind_head)
    experts = built["sst"].mixture.experts
    first = experts.experts[0]
    assert len(experts) == 3 and first.inner.out_features == 24 and first.outer.out_features == H
    assert experts(u).shape == (5, 3, H)


def test_every_task_shares_one_set_of_experts_counted_once_with_a_gate_of_its_own():
    built = heads()
    experts = built["sst"].mixture.experts
    assert built["quora"].mixture.experts is experts and built["sts"].mixture.experts is experts
    gates = [built[task].mixture.gate for task in ("sst", "quora", "sts")]
    assert len({id(gate) for gate in gates}) == 3
    assert [gate.tag for gate in gates] == ["mmoe/gates/sst", "mmoe/gates/quora", "mmoe/gates/sts"]
    own = sum(p.numel() for task in ("sst", "quora", "sts", "ner") for n, p in built[task].named_parameters()
              if ".experts." not in f".{n}")
    assert sum(p.numel() for p in built.parameters()) == own + sum(p.numel() for p in experts.parameters())


def test_experts_start_apart_in_parameters_and_outputs():
    experts = heads()["sst"].mixture.experts
    x = inputs(batch=1)[0]
    outputs = experts(x)[0]  # (E, H)
    count = len(experts)
    for i in range(count):
        for j in range(i + 1, count):
            for name, parameter in experts.experts[i].named_parameters():
                assert not torch.equal(parameter, experts.experts[j].get_parameter(name)), (i, j, name)
            assert (outputs[i] - outputs[j]).abs().max() > 1e-3, (i, j)


def test_gates_are_softmax_weights_summing_to_one_and_start_uniform():
    built = heads(MMoEConfig(experts=5))
    x = inputs(batch=8)[0]
    gate = built["sst"].mixture.gate
    torch.testing.assert_close(gate(x), torch.full((8, 5), 0.2))  # at zero: every expert 1/E
    randomise_gates(built)
    weights = gate(x)
    assert weights.shape == (8, 5) and (weights > 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(8), rtol=0, atol=1e-6)
    assert weights.std(dim=-1).min() > 1e-3  # no longer uniform: each example its own mixture


@pytest.mark.parametrize("residual", [True, False])
def test_the_mixture_is_the_gate_weighted_sum_of_the_experts(residual):
    built = heads(MMoEConfig(experts=3, residual=residual))
    randomise_gates(built)
    mixture = built["quora"].mixture
    x = inputs(batch=6)[0]
    weights = torch.softmax(mixture.gate.linear(x), dim=-1)  # (B, E)
    expected = sum(weights[:, k:k + 1] * mixture.experts.experts[k](x) for k in range(3))  # (B, H)
    torch.testing.assert_close(mixture(x), x + expected if residual else expected)


def test_a_pair_head_mixes_u_and_v_apart_then_the_kinds_head_reads_them():
    built = heads()
    randomise_gates(built)
    u, v = inputs()
    sts = built["sts"]
    cosine = torch.nn.functional.cosine_similarity(sts.mixture(u), sts.mixture(v)).unsqueeze(-1)
    torch.testing.assert_close(sts(u, v), cosine)


def test_the_gate_tallies_training_forwards_only_and_usage_clears_it():
    built = heads(MMoEConfig(experts=3))
    randomise_gates(built)
    gate = built["sst"].mixture.gate
    first, second = inputs(batch=4, seed=1)[0], inputs(batch=6, seed=2)[0]
    built.eval()
    built["sst"](first)
    assert gate.usage() == {}  # evaluation is not usage
    built.train()
    built["sst"](first)
    built["sst"](second)
    expected = gate(torch.cat([first, second]), record=False).mean(dim=0).tolist()
    usage = gate.usage()
    assert list(usage) == ["expert0", "expert1", "expert2"]
    assert list(usage.values()) == pytest.approx(expected, abs=1e-6) and sum(usage.values()) == pytest.approx(1.0)
    assert gate.usage() == {}  # read once
    assert built["quora"].mixture.gate.usage() == {}  # another task's gate saw nothing
    assert "_tally" not in str(list(built.state_dict()))


def test_every_task_trains_the_shared_experts_and_only_its_own_gate():
    built = heads(MMoEConfig(residual=False))
    randomise_gates(built)
    u, v = inputs()
    experts = built["sst"].mixture.experts

    def grads(task: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        built.zero_grad(set_to_none=True)
        output = built[task](u) if task == "sst" else built[task](u, v)
        output.sum().backward()
        return (experts.experts[0].inner.weight.grad.clone(), built["sst"].mixture.gate.linear.weight.grad,
                built["sts"].mixture.gate.linear.weight.grad)

    sst, sst_gate, sts_gate = grads("sst")
    assert sst.abs().sum() > 0 and sst_gate is not None and sst_gate.abs().sum() > 0 and sts_gate is None
    sts, sst_gate, sts_gate = grads("sts")
    assert sts.abs().sum() > 0 and sst_gate is None and sts_gate is not None and sts_gate.abs().sum() > 0


def test_state_dict_loads_back_and_keeps_the_experts_shared():
    source, target = heads(seed=0), heads(seed=1)
    randomise_gates(source)
    target.load_state_dict(source.state_dict())
    u, v = inputs()
    torch.testing.assert_close(target["sst"](u), source["sst"](u))
    torch.testing.assert_close(target["quora"](u, v), source["quora"](u, v))
    assert target["sst"].mixture.experts is target["sts"].mixture.experts


def test_no_task_reading_pooled_embeddings_warns_and_keeps_default_heads(caplog):
    built = mmoe_heads(MMoEConfig(), TASKS[3:], WIDTHS, 0.0)
    assert isinstance(built["ner"], TokenClassifier) and "no task of this run reads pooled embeddings" in caplog.text


@pytest.mark.parametrize("values,message", [
    ({"experts": 0}, "--mmoe-experts must be positive, got 0"),
    ({"width": -3}, "--mmoe-width must be positive, got -3"),
])
def test_bad_settings_are_refused_naming_the_option(values, message):
    with pytest.raises(ValueError, match=message):
        build(MMoEConfig, values, prefix="mmoe-")


def test_its_space_sets_the_topology_settings_when_enabled():
    base = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", plugins=("mmoe",))
    spaces = active_spaces(RunParts(base, make_plugin_manager(enabled=base.plugins, third_party=False)))
    assert "mmoe" in {space.name for space in spaces}
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    config = trial_config(base, spaces, SpaceTrial(trial, {}), "out")
    assert config.components["mmoe"] == {"experts": trial.params["mmoe_experts"], "width": trial.params["mmoe_width"]}
    assert 2 <= trial.params["mmoe_experts"] <= 8 and 64 <= trial.params["mmoe_width"] <= 1024
    build(MMoEConfig, config.components["mmoe"], prefix="mmoe-")  # what it suggests is valid
