"""The lora plugin: the adapter's math, which projections it adapts, the frozen encoder, merging, shared and
per-task adapters, layer-wise rates, resume, evaluate/predict of a LoRA run, DDP, and bad settings."""

import attrs
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.base.errors import ConfigError, PlatformError
from core.build.parts import RunParts
from core.build.run import prepare
from core.build.trained import evaluate_checkpoint, load_run, predict_checkpoint
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.tasks.splits import make_batch
from core.train.loop import train
from plugins.methods.lora import LoRAConfig, LoRALinear, adapters, chosen, merge_adapters

TARGETS = ("query", "value")


def lora(config, **settings):
    """``config`` with ``--plugins lora`` and these ``--lora-…`` settings."""
    return attrs.evolve(config, plugins=(*config.plugins, "lora"), components={"lora": settings} if settings else {})


def batches(run_or_model, config, split="dev"):
    """One batch of eight dev examples of every task of ``config``."""
    parts = RunParts(config)
    return {name: make_batch(data, list(range(8)), parts.tokenizer.pad) for name, data in parts.data(split).items()}


def outputs(model, batches_by_task):
    with torch.no_grad():
        return {name: model(batch) for name, batch in batches_by_task.items()}


def randomize_adapters(model, seed=0):
    """Give every B a random value (a fresh adapter adds nothing), as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in adapters(model).values():
            for B in module.lora_B.values():
                B.copy_(torch.randn(B.shape, generator=generator) * 0.05)


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


def test_a_fresh_adapter_changes_nothing_and_a_trained_one_is_the_dense_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    W, b = base.weight.detach().clone(), base.bias.detach().clone()
    adapted = LoRALinear(base, rank=4, alpha=8.0, dropout=0.0, keys=["shared"])
    assert adapted.weight is base.weight and adapted.bias is base.bias  # the same tensors, under the same names
    x = torch.randn(3, 5, 16)
    assert torch.equal(adapted(x), F.linear(x, W, b))  # B = 0: exactly the frozen projection
    A = adapted.lora_A["shared"]
    assert A.abs().max() <= 1 / 16 ** 0.5 and A.std() > 0  # Kaiming-uniform(a=sqrt 5): bound 1/sqrt(fan_in)
    with torch.no_grad():
        adapted.lora_B["shared"].normal_()
    dense = W + (8.0 / 4) * adapted.lora_B["shared"] @ A  # W + (alpha / r) B A
    torch.testing.assert_close(adapted(x), F.linear(x, dense, b), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adapted.merged()(x), adapted(x), atol=1e-5, rtol=1e-5)
    assert torch.linalg.matrix_rank(adapted.delta()) == 4


@pytest.mark.parametrize("targets, expected", [
    (("query", "value"), {"attention.self.query", "attention.self.value"}),
    (("dense",), {"attention.output.dense", "intermediate.dense", "output.dense"}),
    (("output.dense",), {"output.dense"}),
    (("attention.*",), {"attention.self.query", "attention.self.key", "attention.self.value",
                        "attention.output.dense"}),
    (("*",), {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "intermediate.dense", "output.dense"}),
])
def test_targets_name_projections_inside_every_layer_never_the_pooler(tiny_run_config, targets, expected):
    model = RunParts(tiny_run_config).model()
    picked = chosen(LoRAConfig(targets=targets), model.encoder)
    assert {inner for _, inner, _ in picked} == expected
    assert len(picked) == len(model.encoder.layers) * len(expected)
    assert all(layer is model.encoder.layers[i // len(expected)] for i, (layer, _, _) in enumerate(picked))


# --------------------------------------------------------------------------------------------------
# Training with adapters
# --------------------------------------------------------------------------------------------------


def test_the_encoder_stays_frozen_and_only_adapters_and_heads_train(tiny_run_config):
    run = prepare(lora(attrs.evolve(tiny_run_config, epochs=2)))
    found = adapters(run.model.encoder)
    assert len(found) == 2 * len(TARGETS)
    trainable = {name for name, p in run.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name or name.startswith("heads.") for name in trainable)
    in_optimizer = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in run.model.parameters() if p.requires_grad}
    encoder_before = {name: p.detach().clone() for name, p in run.model.encoder.named_parameters()
                      if ".lora_" not in name}
    heads_before = {name: p.detach().clone() for name, p in run.model.heads.named_parameters()}

    train(run)  # ends by merging the shared adapters into the best model's encoder
    assert not adapters(run.model)
    encoder_after = dict(run.model.encoder.named_parameters())
    assert encoder_after.keys() == encoder_before.keys()  # the checkpoint's names again
    adapted = {f"{path}.weight" for path in found}
    for name, before in encoder_before.items():
        if name in adapted:  # the merged update: nonzero, of rank at most r
            update = encoder_after[name].detach() - before
            assert 0 < torch.linalg.matrix_rank(update) <= LoRAConfig().rank, name
        else:  # embeddings, LayerNorms, biases, key, dense layers, pooler: untouched
            assert torch.equal(encoder_after[name], before), name
    assert any(not torch.equal(p, heads_before[name]) for name, p in run.model.heads.named_parameters())


def test_layer_wise_rates_and_the_head_multiplier_apply_to_adapters_and_heads(tiny_run_config):
    config = lora(attrs.evolve(tiny_run_config, layer_decay=0.5, head_lr_multiplier=10.0))
    run = prepare(config)
    rate = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
    for path, module in adapters(run.model.encoder).items():
        depth = 1 - int(path.split(".")[2])  # two layers: the top one trains at lr, the one below at lr * 0.5
        assert all(rate[id(p)] == pytest.approx(1e-3 * 0.5 ** depth) for p in module.parameters() if p.requires_grad)
    assert all(rate[id(p)] == pytest.approx(1e-2) for p in run.model.heads.parameters())
    decayed = {id(p): group["weight_decay"] for group in run.optimizer.param_groups for p in group["params"]}
    assert all(decayed[id(p)] == run.config.weight_decay for p in adapters(run.model).values()
               for p in (*p.lora_A.values(), *p.lora_B.values()))


def test_merged_outputs_equal_unmerged_and_the_merged_state_needs_no_plugin(tiny_run_config):
    config = lora(attrs.evolve(tiny_run_config, tasks=("sst", "sts")), targets="*", rank=4)
    model = RunParts(config).model().eval()
    randomize_adapters(model)
    data = batches(model, config)
    unmerged = outputs(model, data)
    assert merge_adapters(model) == 2 * 6 and not adapters(model)
    merged = outputs(model, data)
    for task in data:
        torch.testing.assert_close(merged[task], unmerged[task], atol=1e-5, rtol=0)
        assert not torch.equal(unmerged[task], outputs(RunParts(attrs.evolve(config, plugins=())).model().eval(),
                                                       {task: data[task]})[task])  # the adapters did change them

    plain = RunParts(attrs.evolve(config, plugins=(), components={})).model().eval()
    plain.load_state_dict(model.state_dict())  # strictly: the checkpoint's names, no adapter left
    with_plugin = RunParts(config).model().eval()
    with_plugin.load_state_dict(model.state_dict())  # a state without adapters loads as merged: B = 0
    assert all(torch.count_nonzero(B) == 0 for m in adapters(with_plugin).values() for B in m.lora_B.values())
    for other in (plain, with_plugin):
        for task, output in outputs(other, data).items():
            torch.testing.assert_close(output, merged[task], atol=1e-6, rtol=0)


def test_per_task_adapters_each_task_uses_its_own(tiny_run_config):
    config = lora(attrs.evolve(tiny_run_config, tasks=("sst", "sts")), per_task=True)
    model = RunParts(config).model().eval()
    assert all(set(m.lora_A) == {"sst", "sts"} for m in adapters(model).values())
    data = batches(model, config)
    before = outputs(model, data)
    with torch.no_grad():
        for module in adapters(model).values():
            module.lora_B["sts"].normal_()
    after = outputs(model, data)
    assert torch.equal(after["sst"], before["sst"])  # sst's adapters are still fresh
    assert not torch.equal(after["sts"], before["sts"])
    with pytest.raises(PlatformError, match="per-task adapters need a task"):
        model.sentence_embeddings(data["sst"])  # the encoder outside a task's forward
    with torch.no_grad():
        assert torch.equal(model(data["sst"]), after["sst"])  # and the next task's forward works as before


def test_shared_adapters_are_one_set_for_every_task(tiny_run_config):
    model = RunParts(lora(attrs.evolve(tiny_run_config, tasks=("sst", "sts")))).model().eval()
    assert all(list(m.lora_A) == ["shared"] and m.current is None for m in adapters(model).values())
    batch = batches(model, tiny_run_config)["sst"]
    with torch.no_grad():  # the encoder alone runs through the shared adapters, fresh ones adding nothing
        assert torch.equal(model.sentence_embeddings(batch), RunParts(tiny_run_config).model().eval()
                           .sentence_embeddings(batch))


def test_a_tiny_lora_run_end_to_end_then_evaluate_and_predict(train_tiny, tmp_path):
    tiny = train_tiny("sst", "sts", plugins=("lora",), epochs=2, components={"lora": {"rank": 4, "alpha": 8}})
    assert 0.0 <= tiny.best["sst"] <= 1.0 and -1.0 <= tiny.best["sts"] <= 1.0
    saved = torch.load(tiny.folder / "best.pt", weights_only=True)
    assert not any(".lora_" in key for key in saved["model"])  # merged
    assert any(".lora_" in key for key in torch.load(tiny.folder / "last.pt", weights_only=True)["model"])
    assert list(saved["config"]["plugins"]) == ["lora"]
    assert saved["config"]["components"]["lora"] == {"rank": 4, "alpha": 8}

    again = prepare(tiny.config, resume=True)  # a finished run resumed: the best model again, nothing trained
    assert train(again) == tiny.best and not any(".lora_" in key for key in torch.load(
        tiny.folder / "best.pt", weights_only=True)["model"])

    metrics = evaluate_checkpoint(tiny.folder)  # rebuilt from the saved config: the plugin, the merged weights
    expected = {name: value for name, value in tiny.best.items() if name != "epoch"}
    assert metrics == pytest.approx(expected, abs=1e-5)
    written = predict_checkpoint(tiny.folder, out=tmp_path / "predicted")
    for path in written:
        ours = (tiny.folder / "predictions" / path.name).read_text()
        assert path.read_text() == ours  # the merged model predicts what the adapted one did


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["roberta", "distilbert", "electra", "mpnet", "deberta-v2"])
def test_the_default_targets_fit_every_built_in_architecture(architecture, tmp_path, tiny_run_config, train_tiny,
                                                              tiny_data_dir):
    """query and value under each architecture's own names (q_lin, q, query_proj, ...), two per layer; the
    merged run evaluates as it scored."""
    from tests.plugins.test_encoders import FOLDERS

    folder = str(FOLDERS[architecture](tmp_path))
    model = RunParts(lora(attrs.evolve(tiny_run_config, checkpoint=folder))).model()
    names = {path.rsplit(".", 1)[-1] for path in adapters(model)}
    assert len(adapters(model)) == 2 * len(model.encoder.layers) and len(names) == 2, names
    run = train_tiny("sst", "sts", checkpoint=folder, plugins=("lora",))
    again = evaluate_checkpoint(run.folder, data_dir=str(tiny_data_dir))
    assert again == pytest.approx({k: v for k, v in run.best.items() if k != "epoch"}, abs=1e-5)


def test_per_task_adapters_stay_unmerged_and_evaluate_exactly(train_tiny):
    tiny = train_tiny("sst", "sts", plugins=("lora",), components={"lora": {"per_task": True}})
    saved = torch.load(tiny.folder / "best.pt", weights_only=True)["model"]
    assert any(key.endswith(".lora_A.sst") for key in saved) and any(key.endswith(".lora_B.sts") for key in saved)
    _, model, _ = load_run(tiny.folder)
    assert adapters(model) and all(m.current is not None for m in adapters(model).values())
    assert evaluate_checkpoint(tiny.folder) == {name: value for name, value in tiny.best.items() if name != "epoch"}


def test_a_study_searches_the_adapters_of_a_base_configuration_with_lora(tiny_run_config):
    from studies.runner import active_spaces
    from studies.space import dry_run

    config = lora(tiny_run_config)
    suggested = dry_run(config, active_spaces(RunParts(config)), {})
    assert {"lora_rank", "lora_alpha", "lora_dropout", "lora_targets"} <= set(suggested)
    assert suggested["lora_rank"].plugin == "lora"
    assert not {"lora_rank"} & set(dry_run(tiny_run_config, active_spaces(RunParts(tiny_run_config)), {}))


@pytest.mark.parametrize("per_task", [False, True])
def test_a_gradient_balancer_keeps_apart_the_tasks_gradients_of_the_adapters_only(tiny_config, per_task):
    config = lora(attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("famo",), update="summed",
                               sampler="rrobin", epochs=1), per_task=per_task)
    run = prepare(config)
    shared = {id(p) for p in run.parameter_split.shared}
    assert shared == {id(p) for m in adapters(run.model).values() for p in (*m.lora_A.values(), *m.lora_B.values())}
    best = train(run)
    assert {"sst", "sts"} <= set(best) and run.balancer.gradients


# --------------------------------------------------------------------------------------------------
# Resume, bf16, DDP
# --------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class InterruptAt:
    """Stops training right after global step ``step``, before that step's checkpoint."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def platform_on_after_step(self, step):
        if step == self.step:
            raise Interrupted(step)


@pytest.mark.slow
@pytest.mark.parametrize("precision, per_task", [("fp32", False), ("bf16", True)])
def test_a_stopped_lora_run_resumes_to_the_uninterrupted_results(tiny_config, tmp_path, precision, per_task):
    config = lora(attrs.evolve(tiny_config, tasks=("sst", "sts"), precision=precision, save_every=1,
                               output_dir=str(tmp_path / "reference")), per_task=per_task, dropout=0.1)
    reference = train(prepare(config))
    reference_model = torch.load(tmp_path / "reference" / "best.pt", weights_only=True)["model"]

    stopped = attrs.evolve(config, output_dir=str(tmp_path / "stopped"))
    pm = make_plugin_manager(enabled=stopped.plugins)
    pm.register(InterruptAt(5), name="interrupt")  # the second epoch's second step (3 steps an epoch)
    run = prepare(stopped, pm)
    with pytest.raises(Interrupted):
        train(run)
    run.close()
    resumed = prepare(stopped, resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1) and resumed.model.precision == precision
    assert adapters(resumed.model)  # last.pt holds the unmerged adapters and their optimizer state
    assert train(resumed) == reference
    final = torch.load(tmp_path / "stopped" / "best.pt", weights_only=True)["model"]
    assert final.keys() == reference_model.keys() and all(torch.equal(final[k], reference_model[k]) for k in final)


@pytest.mark.integration
@pytest.mark.parametrize("per_task", [False, True])
def test_two_processes_train_lora_as_one(tmp_path, tiny_data_dir, per_task):
    """DDP averages the gradients of the adapters and heads only (the frozen encoder has none; with per-task
    adapters, a task batch leaves the other tasks' adapters without one): the same results as one process."""
    from tests.core.test_distributed import assert_same_training, config_of, platform_run_on_two, run_options

    extra = ["--tasks", "sst,quora,sts", "--batch-size", "8", "--interleaved-ratios", "sst=8,quora=1,sts=3",
             "--dropout", "0", "--plugins", "lora", "--lora-targets", "query,value,dense",
             "--lora-per-task", str(per_task).lower()]
    train(prepare(config_of(run_options(tiny_data_dir, tmp_path / "one", *extra))))
    platform_run_on_two(*run_options(tiny_data_dir, tmp_path / "two", *extra))
    assert_same_training(tmp_path / "one", tmp_path / "two", tolerance=1e-5)


# --------------------------------------------------------------------------------------------------
# Bad settings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"rank": 0}, "settings of 'lora': --lora-rank must be positive, got 0"),
    ({"rank": 2.5}, "--lora-rank must be <class 'int'>"),
    ({"alpha": -1}, "settings of 'lora': --lora-alpha must be positive, got -1.0"),
    ({"dropout": 1.0}, "--lora-dropout must be < 1.0: 1.0"),
    ({"targets": ""}, "--lora-targets must name at least one projection (e.g. query,value)"),
    ({"targets": "query,qkv"}, "--lora-targets: 'qkv' names no projection of the encoder's layers; they are "
                               "attention.output.dense, attention.self.key, attention.self.query, "
                               "attention.self.value, intermediate.dense, output.dense (a plain name matches the "
                               "last part)"),
    ({"rank": 200}, "--lora-rank 200 is above the width of attention.self.query (128 -> 128); use at most 128"),
])
def test_bad_settings_are_refused_in_one_line(tiny_run_config, settings, message):
    with pytest.raises(ConfigError) as info:
        prepare(lora(tiny_run_config, **settings))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pretrain_mode_with_lora_is_refused(tiny_run_config):
    with pytest.raises(ConfigError, match="^--plugins lora trains adapters inside the encoder, which --mode pretrain "
                                          "freezes; use --mode finetune$"):
        prepare(lora(attrs.evolve(tiny_run_config, mode="pretrain")))


@pytest.mark.parametrize("args, message", [
    (["--lora-rank", "0"], "--lora-rank must be positive, got 0"),
    (["--lora-targets", "attention.self.qkv"], "--lora-targets: 'attention.self.qkv' names no projection of the "
                                               "encoder's layers; they are attention.output.dense, attention.self.key, "
                                               "attention.self.query, attention.self.value, intermediate.dense, "
                                               "output.dense (a plain name matches the last part)"),
])
def test_the_command_line_refuses_bad_lora_options_in_one_line(capsys, tmp_path, tiny_data_dir, args, message):
    from core.cli.main import main

    code = main(["run", "--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--max-length", "24", "--threads",
                 "1", "--data-dir", str(tiny_data_dir), "--output-dir", str(tmp_path / "run"), "--plugins", "lora",
                 "--lora-per-task", "true", *args])
    # a target is checked against the encoder's layers, once the model is built: after the data is read
    assert code == 2 and capsys.readouterr().err.splitlines()[-1] == f"platform run: error: {message}"
    assert not (tmp_path / "run").exists()  # refused before the run's folder holds anything


def test_platform_plugins_lists_lora_with_one_line(capsys):
    from core.cli.main import main

    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out.splitlines()
    start = listed.index("lora  [opt-in (--plugins lora)]  plugins.methods.lora")
    assert listed[start + 1].startswith("    model transform lora: LoRA: low-rank adapters on the encoder's "
                                        "projections")
    assert listed[start + 2] == "    hooks: platform_model_transforms, platform_on_train_end"


def test_lora_options_without_the_plugin_say_how_to_enable_it(tiny_run_config):
    with pytest.raises(ConfigError, match="^--lora-rank is a setting of model transform 'lora' from plugin 'lora', "
                                          "which is not enabled: add --plugins lora$"):
        prepare(attrs.evolve(tiny_run_config, components={"lora": {"rank": 4}}))
