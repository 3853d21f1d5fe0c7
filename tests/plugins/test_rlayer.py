"""plugins.methods.rlayer: the scaled Hadamard product, one shared relational layer, errors, a tiny run."""

from __future__ import annotations

import attrs
import pytest
import torch
import torch.nn.functional as F

from core.build.run import prepare
from core.build.trained import load_run
from core.plugin.registries import TOPOLOGIES
from core.plugin.registry import Registry
from core.tasks.heads import CosineRegressor, PairClassifier, SentenceClassifier, Widths
from core.tasks.spec import TaskSpec
from core.train.loop import train
from core.train.optim import AdamW
from plugins.methods import rlayer
from plugins.methods.rlayer import RelationalHead, RelationalLayer, RLayerConfig, relational_heads, scaled_hadamard
from tests.helpers import bind_tasks

H = 16
FILES = {"train": "-", "dev": "-"}
SST = TaskSpec(name="sst", kind="single-classification", files=FILES, text_columns=("s",), num_labels=5)
QUORA = TaskSpec(name="quora", kind="pair-classification", files=FILES, text_columns=("a", "b"), num_labels=1)
STS = TaskSpec(name="sts", kind="pair-regression", files=FILES, text_columns=("a", "b"), label_range=(0.0, 5.0))
NLI = TaskSpec(name="nli", kind="pair-classification", files=FILES, text_columns=("a", "b"), num_labels=3)  # third party
TASKS = list(bind_tasks(SST, QUORA, STS, NLI).values())
WIDTHS = Widths(H, H)


def pair(batch=4, width=H, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, width, generator=generator), torch.randn(batch, width, generator=generator)


def test_registers_the_rlayer_topology_with_settings():
    registry = Registry(TOPOLOGIES)
    for component in rlayer.platform_topologies():
        registry.add(component, "rlayer")
    component = registry["rlayer"]
    assert component.factory is relational_heads and component.settings is RLayerConfig and component.help
    assert rlayer.PLATFORM_OPT_IN is True


def test_scaled_hadamard_sums_to_the_cosine_similarity():
    u, v = (x.double() for x in pair(batch=64, width=48, seed=1))
    product = scaled_hadamard(u, v, eps=1e-8)
    assert product.shape == u.shape
    torch.testing.assert_close(product.sum(dim=-1), F.cosine_similarity(u, v, dim=-1), rtol=0, atol=1e-9)
    torch.testing.assert_close(scaled_hadamard(u, v, eps=0.0).sum(dim=-1), F.cosine_similarity(u, v, dim=-1),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("width", [16, 384])
def test_features_scaled_by_the_width_are_unit_sized_and_their_mean_is_the_cosine(width):
    u, v = pair(batch=256, width=width, seed=2)
    hidden, none, norm = (RelationalLayer(width, scale=scale).product(u, v) for scale in ("hidden", "none", "layernorm"))
    torch.testing.assert_close(hidden.mean(dim=-1), F.cosine_similarity(u, v, dim=-1), rtol=0, atol=1e-5)
    assert 0.5 < hidden.std().item() < 2.0  # unit-sized whatever the width
    assert none.abs().mean().item() < 1.0 / width  # each feature about 1/H: what the first layer saw before
    torch.testing.assert_close(norm.mean(dim=-1), torch.zeros(256), rtol=0, atol=1e-5)  # LayerNorm drops the cosine


def test_residual_heads_start_as_the_default_heads():
    heads = relational_heads(RLayerConfig(), TASKS, WIDTHS, dropout=0.0)
    u, v = pair(batch=6)
    assert isinstance(heads["sts"].default, CosineRegressor) and isinstance(heads["quora"].default, PairClassifier)
    torch.testing.assert_close(heads["sts"](u, v), F.cosine_similarity(u, v, dim=-1).unsqueeze(-1))
    torch.testing.assert_close(heads["quora"](u, v), heads["quora"].default(u, v))
    assert heads["nli"](u, v).shape == (6, 3) and not heads["quora"].out.weight.any()
    plain = relational_heads(RLayerConfig(residual=False), TASKS, WIDTHS, dropout=0.0)
    assert plain["sts"].default is None and plain["quora"].out.weight.any()


def train_on_cosine_pairs(config: RLayerConfig, steps: int = 300, lr: float = 1e-4) -> tuple[list[float], torch.Tensor,
                                                                                               torch.Tensor]:
    """A pair-classification head on synthetic embeddings whose label is cos(u, v) > 0.6, trained with
    our AdamW: (losses per step, held-out predictions, held-out labels)."""
    width = 64
    torch.manual_seed(0)
    head = relational_heads(config, TASKS[1:2], Widths(width, width), dropout=0.0)["quora"]
    optimizer = AdamW(head.parameters(), lr=lr)

    def batch(n: int, generator: torch.Generator):
        u, noise = torch.randn(n, width, generator=generator), torch.randn(n, width, generator=generator)
        v = (mix := torch.rand(n, 1, generator=generator)) * u + (1 - mix) * noise
        return u, v, (F.cosine_similarity(u, v) > 0.6).float()

    generator, losses = torch.Generator().manual_seed(1), []
    for _ in range(steps):
        u, v, labels = batch(32, generator)
        loss = F.binary_cross_entropy_with_logits(head(u, v).view(-1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    u, v, labels = batch(2000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        return losses, (head(u, v).view(-1) > 0).float(), labels


def test_unscaled_features_leave_the_logit_at_its_bias_scaled_ones_learn():
    """What made rlayer predict Quora's majority class: the unscaled product barely moves the logit."""
    losses, predicted, labels = train_on_cosine_pairs(RLayerConfig(scale="none", residual=False))
    assert predicted.unique().numel() == 1  # one class for every pair
    majority = max(labels.mean().item(), 1 - labels.mean().item())
    losses, predicted, labels = train_on_cosine_pairs(RLayerConfig(scale="hidden", residual=False))
    assert sum(losses[-20:]) < 0.8 * sum(losses[:20])  # the loss falls
    assert 0.1 < predicted.mean().item() < 0.9 and (predicted == labels).float().mean().item() > majority + 0.15


def test_the_residual_head_learns_from_the_default_heads_start():
    losses, predicted, labels = train_on_cosine_pairs(RLayerConfig())
    assert sum(losses[-20:]) < 0.8 * sum(losses[:20])
    assert (predicted == labels).float().mean().item() > 0.75


def test_pair_tasks_share_one_relational_layer_other_tasks_get_default_heads():
    heads = relational_heads(RLayerConfig(), TASKS, WIDTHS, dropout=0.0)
    relation = heads["quora"].relation
    assert isinstance(relation, RelationalLayer)
    assert heads["sts"].relation is relation and heads["nli"].relation is relation  # a third-party pair task too
    assert isinstance(heads["sst"], SentenceClassifier)
    own = sum(p.numel() for name in ("sst", "quora", "sts", "nli") for n, p in heads[name].named_parameters()
              if not n.startswith("relation."))
    shared = sum(p.numel() for p in relation.parameters())
    assert sum(p.numel() for p in heads.parameters()) == own + shared  # the shared layer counted once
    assert relation.inner.in_features == H and relation.inner.out_features == H and relation.outer.out_features == H
    assert relation.act.negative_slope == 0.01


def test_output_shapes_and_settings():
    heads = relational_heads(RLayerConfig(width=24, with_difference=True, negative_slope=0.2), TASKS, WIDTHS, 0.0)
    u, v = pair(batch=5)
    assert heads["quora"](u, v).shape == (5, 1)  # one logit
    assert heads["nli"](u, v).shape == (5, 3)  # class logits
    assert heads["sts"](u, v).shape == (5, 1)  # one score
    assert heads["sst"](u).shape == (5, 5)
    relation = heads["sts"].relation
    assert (relation.inner.in_features, relation.inner.out_features) == (2 * H, 24)
    assert relation.act.negative_slope == 0.2 and relation(u, v).shape == (5, H)


def test_selected_tasks_share_the_others_keep_default_heads():
    heads = relational_heads(RLayerConfig(tasks="sts,nli"), TASKS, WIDTHS, 0.0)
    assert heads["sts"].relation is heads["nli"].relation
    assert isinstance(heads["quora"], PairClassifier)


def test_gradients_of_both_tasks_reach_the_shared_layer():
    heads = relational_heads(RLayerConfig(residual=False), TASKS[1:3], WIDTHS, 0.0)  # quora, sts
    u, v = pair()
    relation = heads["quora"].relation

    def grad_of(*tasks):
        heads.zero_grad(set_to_none=True)
        sum(heads[task](u, v).sum() for task in tasks).backward()
        return relation.inner.weight.grad.clone()

    quora, sts, both = grad_of("quora"), grad_of("sts"), grad_of("quora", "sts")
    assert quora.abs().sum() > 0 and sts.abs().sum() > 0
    torch.testing.assert_close(both, quora + sts)


def test_state_dict_loads_back_and_keeps_the_layer_shared():
    config = RLayerConfig(with_difference=True)
    source, target = relational_heads(config, TASKS, WIDTHS, 0.0), relational_heads(config, TASKS, WIDTHS, 0.0)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    target.load_state_dict(source.state_dict())
    u, v = pair()
    for task in ("quora", "sts", "nli"):
        torch.testing.assert_close(target[task](u, v), source[task](u, v))
    assert target["quora"].relation is target["sts"].relation


@pytest.mark.parametrize("tasks,message", [
    ("sts,paws", r"--rlayer-tasks: task 'paws' is not a task of this run; its pair tasks are: quora, sts, nli"),
    ("sst", r"--rlayer-tasks: task 'sst' is of kind single-classification, .* choose among: quora, sts, nli"),
])
def test_unknown_or_single_sentence_task_is_refused_by_name(tasks, message):
    with pytest.raises(ValueError, match=message):
        relational_heads(RLayerConfig(tasks=tasks), TASKS, WIDTHS, 0.0)


def test_bad_width_or_scale_is_refused():
    from core.base.settings import build

    with pytest.raises(ValueError, match="--rlayer-width must be positive, got 0"):
        build(RLayerConfig, {"width": 0}, prefix="rlayer-")
    with pytest.raises(ValueError, match="--rlayer-scale must be in"):
        build(RLayerConfig, {"scale": "sqrt"}, prefix="rlayer-")


def test_tiny_run_trains_and_reloads_the_same_model(tiny_config):
    config = attrs.evolve(tiny_config, plugins=("rlayer",), epochs=1)
    run = prepare(config)
    relation = run.model.heads["quora"].relation
    assert isinstance(run.model.heads["sts"], RelationalHead) and run.model.heads["sts"].relation is relation
    before = relation.inner.weight.detach().clone()
    best = train(run)
    assert set(best) >= {"sst", "cfimdb", "quora", "sts", "mean"}
    assert not torch.equal(before, relation.inner.weight)

    saved, model, _ = load_run(config.output_dir)
    assert saved.plugins == ("rlayer",)
    assert model.heads["sts"].relation is model.heads["quora"].relation
    trained = run.model.state_dict()
    assert list(model.state_dict()) == list(trained)
    assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items())
