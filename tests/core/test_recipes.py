"""Fine-tuning recipes in the core: layer-wise rate decay, weight decay groups, the warm-up schedule,
and the pooling choices."""

from __future__ import annotations

import attrs
import pytest
import torch

from core.base.errors import ConfigError
from core.base.settings import build
from core.build.parts import RunParts
from core.build.run import prepare
from core.data.batch import Batch
from core.encoder.pooling import pool, pooled_width
from core.experiment.config import RunConfig
from core.tasks.spec import TaskSpec
from core.train.loop import task_step, train
from core.train.optim import build_optimizer, warmup_linear_decay
from tests.helpers import bind_tasks

FILES = {"train": "-", "dev": "-"}
SST = TaskSpec(name="sst", kind="single-classification", files=FILES, text_columns=("s",), num_labels=5)
STS = TaskSpec(name="sts", kind="pair-regression", files=FILES, text_columns=("a", "b"), label_range=(0.0, 5.0))
LR = 1e-3


def model_of(config: RunConfig, tasks=(SST, STS)):
    """The model ``config`` builds (tiny random-init encoder: 2 layers, hidden size 128)."""
    parts = RunParts(config)
    parts.tasks = bind_tasks(*tasks)  # the fixture specs, in place of the registered tasks of the same names
    return parts.model()


def config_of(**overrides) -> RunConfig:
    return RunConfig(tasks=("sst", "sts"), checkpoint="tiny", lr=LR, dropout=0.0, device="cpu", **overrides)


def rate_of(optimizer, parameter) -> tuple[float, float]:
    """(lr, weight decay) of the group that holds ``parameter``."""
    [group] = [g for g in optimizer.param_groups if any(p is parameter for p in g["params"])]
    return group["lr"], group["weight_decay"]


# --------------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay and weight decay
# --------------------------------------------------------------------------------------------------


def test_layer_decay_gives_each_layer_its_rate_and_the_schedule_scales_them_all():
    model = model_of(config_of())
    config = config_of(layer_decay=0.5, warmup=0.5)
    optimizer, scheduler = build_optimizer(config, model, total_steps=4)
    bert = model.encoder
    expected = {
        bert.encoder.layer[1].attention.self.query.weight: LR,  # top layer
        bert.pooler.dense.weight: LR,
        model.heads["sst"].out.weight: LR,
        bert.encoder.layer[0].intermediate.dense.weight: LR * 0.5,
        bert.encoder.layer[0].output.LayerNorm.bias: LR * 0.5,
        bert.embeddings.word_embeddings.weight: LR * 0.25,
        bert.embeddings.LayerNorm.weight: LR * 0.25,
    }
    warmup_steps = 2
    for step in range(4):
        factor = warmup_linear_decay(step, warmup_steps, 4)
        for parameter, lr in expected.items():
            assert rate_of(optimizer, parameter)[0] == pytest.approx(lr * factor)
        optimizer.step()
        scheduler.step()
    assert warmup_linear_decay(0, 2, 4) == pytest.approx(1 / 3)  # the first step already moves
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # at the end of training
    trainable = [p for p in model.parameters() if p.requires_grad]
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(trainable) and {id(p) for p in grouped} == {id(p) for p in trainable}


def test_no_layer_decay_keeps_one_rate():
    model = model_of(config_of())
    optimizer, _ = build_optimizer(config_of(), model, total_steps=10)
    assert {g["lr"] for g in optimizer.param_groups} == {LR}


def test_weight_decay_spares_biases_and_layernorm_weights():
    model = model_of(config_of())
    optimizer, _ = build_optimizer(config_of(weight_decay=0.01, layer_decay=0.8), model, total_steps=10)
    for name, parameter in model.named_parameters():
        decayed = rate_of(optimizer, parameter)[1] == 0.01
        assert decayed == (parameter.ndim >= 2), name
        if "bias" in name or "LayerNorm" in name:
            assert not decayed, name
    assert rate_of(optimizer, model.encoder.embeddings.word_embeddings.weight)[1] == 0.01


def test_warmup_then_linear_decay_factor():
    total, warmup = 100, 10
    assert warmup_linear_decay(0, warmup, total) == pytest.approx(1 / 11)  # start
    assert warmup_linear_decay(9, warmup, total) == pytest.approx(10 / 11)
    assert warmup_linear_decay(10, warmup, total) == pytest.approx(1.0)  # peak after the warm-up
    assert warmup_linear_decay(55, warmup, total) == pytest.approx(0.5)  # middle of the decay
    assert warmup_linear_decay(100, warmup, total) == 0.0  # end
    model = model_of(config_of())
    _, constant = build_optimizer(config_of(), model, total_steps=100)  # --warmup 0: no schedule at all
    assert constant.lr_lambdas[0](0) == constant.lr_lambdas[0](99) == 1.0


def test_pretrain_mode_with_layer_decay_trains_only_the_heads(tiny_config):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), mode="pretrain", layer_decay=0.5, weight_decay=0.01,
                          plugins=("rlayer",), pooling="cls-concat-2", epochs=1)
    run = prepare(config)
    grouped = [p for g in run.optimizer.param_groups for p in g["params"]]
    assert grouped and all(p.requires_grad for p in grouped)
    assert {id(p) for p in grouped} == {id(p) for p in run.model.heads.parameters()}
    assert {g["lr"] for g in run.optimizer.param_groups} == {1e-3}  # heads only: all at the base rate
    relation = run.model.heads["sts"].relation
    assert relation.inner.in_features == 2 * 128  # the heads take the pooled width
    before = relation.inner.weight.detach().clone()
    train(run)
    assert not torch.equal(before, relation.inner.weight)


def test_heads_train_at_their_multiple_of_the_rate_the_encoder_as_before():
    config = config_of(layer_decay=0.5, warmup=0.5, head_lr_multiplier=20.0, plugins=("rlayer",))
    model = model_of(config)
    optimizer, scheduler = build_optimizer(config, model, total_steps=4)
    relation = model.heads["sts"].relation
    heads = {model.heads["sst"].out.weight: LR * 20, model.heads["sst"].out.bias: LR * 20,
             relation.inner.weight: LR * 20, model.heads["sts"].out.weight: LR * 20}  # the shared layer too
    encoder = {model.encoder.pooler.dense.weight: LR, model.encoder.encoder.layer[1].output.dense.weight: LR,
               model.encoder.encoder.layer[0].output.dense.weight: LR * 0.5,
               model.encoder.embeddings.word_embeddings.weight: LR * 0.25}
    for step in range(3):
        factor = warmup_linear_decay(step, 2, 4)
        for parameter, lr in {**heads, **encoder}.items():
            assert rate_of(optimizer, parameter)[0] == pytest.approx(lr * factor)
        optimizer.step()
        scheduler.step()
    names = [g["name"] for g in optimizer.param_groups]
    assert names[-2:] == ["heads (weight decay)", "heads (no weight decay)"] and names[0] == "pooler, layer 1 (weight decay)"
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(1 for p in model.parameters())


def test_a_multiplier_of_one_keeps_the_groups_of_before():
    model = model_of(config_of())
    optimizer, _ = build_optimizer(config_of(head_lr_multiplier=1.0), model, total_steps=10)
    assert [g["name"] for g in optimizer.param_groups][:2] == ["heads, pooler, layer 1 (weight decay)",
                                                               "heads, pooler, layer 1 (no weight decay)"]
    with pytest.raises(ValueError, match="--head-lr-multiplier must be positive, got 0"):
        build(RunConfig, {"head_lr_multiplier": 0.0})


def test_layer_decay_is_validated():
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"--layer-decay must be in \(0, 1\]"):
            config_of(layer_decay=bad)


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------


def batch_of(task="sst", seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (3, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # padding
    ids[1, 4:] = 0
    return Batch(task=task, input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=None,
                 ids=["a", "b", "c"], indices=torch.arange(3))


@pytest.mark.parametrize("how,width", [("cls", 128), ("mean", 128), ("pooler", 128), ("cls-concat-1", 128),
                                       ("cls-concat-2", 256), ("cls-mean-2", 128)])
def test_each_pooling_gives_its_width(how, width):
    model = model_of(config_of(pooling=how)).eval()
    assert pooled_width(how, 128) == width
    assert model.sentence_embeddings(batch_of()).shape == (3, width)
    assert model.heads["sst"].out.in_features == width  # heads are built at the pooled width
    assert model(batch_of()).shape == (3, 5)


def test_poolings_agree_with_the_encoder_outputs():
    model = model_of(config_of()).eval()
    batch = batch_of()
    with torch.no_grad():
        out = model.encoder(batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
        mask = batch.attention_mask

        def pooled(how):
            return pool(out, mask, how)

        torch.testing.assert_close(pooled("cls-mean-1"), pooled("cls"), rtol=0, atol=0)
        torch.testing.assert_close(pooled("pooler"), out.pooler_output, rtol=0, atol=0)
        torch.testing.assert_close(pooled("cls"), out.last_hidden_state[:, 0], rtol=0, atol=0)
        layers = out.hidden_states
        torch.testing.assert_close(pooled("cls-concat-2"), torch.cat([layers[1][:, 0], layers[2][:, 0]], dim=-1))
        torch.testing.assert_close(pooled("cls-mean-2"), (layers[1][:, 0] + layers[2][:, 0]) / 2)
        torch.testing.assert_close(pooled("mean")[1], out.last_hidden_state[1, :4].mean(dim=0))  # padding left out


def test_hidden_states_are_requested_only_when_the_pooling_needs_them():
    seen = []
    for how in ("mean", "cls-mean-2"):
        model = model_of(config_of(pooling=how)).eval()
        model.encoder.encoder.register_forward_hook(lambda module, args, output: seen.append(output[1] is not None))
        model.sentence_embeddings(batch_of())
    assert seen == [False, True]


@pytest.mark.parametrize("bad", ["max", "cls-concat", "cls-concat-0", "cls-mean-x", "last4-cls-concat", ""])
def test_unknown_pooling_lists_the_choices(bad):
    with pytest.raises(ValueError, match=rf"--pooling: unknown pooling '{bad}'; choose one of cls, mean, pooler, "
                                         r"cls-concat-K, cls-mean-K"):
        config_of(pooling=bad)


def test_pooling_deeper_than_the_encoder_names_its_layer_count():
    with pytest.raises(ConfigError, match=r"--pooling: pooling 'cls-concat-3' needs the last 3 layers, but the "
                                          r"encoder has 2; choose K between 1 and 2"):
        model_of(config_of(pooling="cls-concat-3"))


# --------------------------------------------------------------------------------------------------
# Task loss weights
# --------------------------------------------------------------------------------------------------


def test_a_tasks_loss_weight_scales_its_gradient_and_not_its_logged_loss(tiny_config, tmp_path):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), dropout=0.0)
    runs = [prepare(attrs.evolve(config, loss_weights=weights, output_dir=str(tmp_path / name)))
            for name, weights in (("plain", ""), ("weighted", "sts=3"))]
    assert runs[1].loss_weights == {"sst": 1.0, "sts": 3.0}
    parts, grads = [], []
    for run in runs:
        parts.append(task_step(run, "sts", list(range(8)))["loss"])
        grads.append(run.model.encoder.encoder.layer[0].output.dense.weight.grad.clone())
        run.optimizer.zero_grad(set_to_none=True)
        task_step(run, "sst", list(range(8)))
        grads.append(run.model.encoder.encoder.layer[0].output.dense.weight.grad.clone())
    torch.testing.assert_close(parts[1], parts[0])  # logged unweighted
    torch.testing.assert_close(grads[2], 3 * grads[0])  # sts: three times the gradient
    torch.testing.assert_close(grads[3], grads[1])  # sst: as before


@pytest.mark.parametrize("text,message", [
    ("sts=0", "--loss-weights: bad entry 'sts=0'; expected TASK=WEIGHT with WEIGHT > 0, e.g. sts=20"),
    ("quora=2", r"--loss-weights: task 'quora' is not among the run's tasks \(sst, sts\)"),
    ("sts", "--loss-weights: bad entry 'sts'; expected TASK=WEIGHT"),
])
def test_bad_loss_weights_are_refused_naming_the_option(text, message):
    with pytest.raises(ConfigError, match=message):
        build(RunConfig, {"tasks": ("sst", "sts"), "loss_weights": text})
