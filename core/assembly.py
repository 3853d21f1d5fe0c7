"""From a :class:`RunConfig` to the live parts of a run: tasks, tokenizer, data, model, optimizer,
schedule, sampler and regularizers. Every name in the configuration is checked here, at the boundary,
with an error that names the option and what would be right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pluggy
import torch

from core.config import RunConfig, build
from core.data import SplitData, load_split, resolve_data_dir
from core.multitask import MultitaskModel
from core.optim import AdamW
from core.plugins import Registries, is_opt_in, make_plugin_manager
from core.pretrained import load_encoder, resolve_checkpoint
from core.registry import Entry, RegistryError
from core.tasks import TaskSpec
from core.tokenizer import Tokenizer


class ConfigError(ValueError):
    """Options that are unknown or do not work together."""


def plugin_manager(config: RunConfig) -> pluggy.PluginManager:
    return make_plugin_manager(enabled=config.plugins)


def component_config(config: RunConfig, entry: Entry) -> Any:
    """The attrs settings of a sampler/regularizer/topology, from ``config.components``."""
    if entry.config is None:
        return None
    values = config.components.get(entry.name, {})
    return build(entry.config, values, source=f"settings of {entry.name!r}")


def select_tasks(config: RunConfig, registries: Registries) -> dict[str, TaskSpec]:
    try:
        return {name: registries.tasks[name].value for name in config.tasks}
    except RegistryError as error:
        raise ConfigError(f"--tasks: {error}") from None


def select_topology(config: RunConfig, registries: Registries, pm: pluggy.PluginManager) -> Entry:
    """``--topology`` if given; otherwise the one topology an enabled opt-in plugin provides."""
    if config.topology:
        return _lookup(registries.topologies, config.topology, "--topology")
    opt_in = {name for name, plugin in pm.list_name_plugin() if is_opt_in(plugin)}
    offered = [entry for entry in registries.topologies if entry.plugin in opt_in]
    if len(offered) > 1:
        names = ", ".join(f"{e.name} (plugin {e.plugin})" for e in offered)
        raise ConfigError(f"--plugins: several enabled plugins provide a head topology ({names}); choose one with --topology")
    return offered[0] if offered else registries.topologies["independent"]


def select_regularizers(registries: Registries, pm: pluggy.PluginManager) -> list[Entry]:
    """Regularizers come from opt-in plugins: enabling the plugin enables them."""
    return [entry for entry in registries.regularizers if pm.get_plugin(entry.plugin) is not None]


def _lookup(registry, name: str, option: str) -> Entry:
    try:
        return registry[name]
    except RegistryError as error:
        raise ConfigError(f"{option}: {error}") from None


def load_tokenizer(config: RunConfig) -> Tokenizer:
    source = resolve_checkpoint(config.checkpoint)
    return Tokenizer(source.vocab, lowercase=source.lowercase)


def load_data(config: RunConfig, tasks: dict[str, TaskSpec], tokenizer: Tokenizer, split: str) -> dict[str, SplitData]:
    data_dir = resolve_data_dir(config.data_dir)
    return {name: load_split(task, split, data_dir=data_dir, tokenizer=tokenizer, max_length=config.max_length,
                             limit=config.limit)
            for name, task in tasks.items() if split in task.files}


def build_model(config: RunConfig, tasks: dict[str, TaskSpec], topology: Entry) -> MultitaskModel:
    torch.manual_seed(config.seed)
    encoder = load_encoder(config.checkpoint, hidden_dropout_prob=config.dropout,
                           attention_probs_dropout_prob=config.dropout, seed=config.seed)
    heads = topology.value(component_config(config, topology), list(tasks.values()),
                           encoder.config.hidden_size, config.dropout)
    missing = [name for name in tasks if name not in heads]
    if missing:
        raise ConfigError(f"topology {topology.name!r} built no head for task(s) {missing}")
    model = MultitaskModel(encoder, heads, tasks, config.pooling)
    if config.mode == "pretrain":
        model.freeze_encoder()
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"--mode pretrain freezes the encoder, and the heads of {', '.join(tasks)} have no "
                              "trainable parameters (a cosine head has none); use --mode finetune")
    return model


def build_optimizer(config: RunConfig, model: torch.nn.Module, total_steps: int):
    """AdamW over trainable parameters, and a linear warm-up then linear decay schedule
    (constant when ``--warmup 0``)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup_steps = int(config.warmup * total_steps)

    def factor(step: int) -> float:
        if config.warmup == 0:
            return 1.0
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def default_output_dir(config: RunConfig) -> Path:
    import time

    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(config.tasks)}"


def finalize(config: RunConfig) -> RunConfig:
    """Fill in the output folder so the saved configuration names it."""
    if config.output_dir:
        return config
    return attrs.evolve(config, output_dir=str(default_output_dir(config)))
