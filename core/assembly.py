"""From a :class:`RunConfig` to the live parts of a run: tasks, tokenizer, data, model, optimizer,
schedule, sampler and regularizers. Every name in the configuration is checked here, at the boundary,
with an error that names the option and what would be right."""

from __future__ import annotations

from typing import Any

import attrs
import pluggy
import torch

from core.config import RunConfig, build
from core.data import VALIDATION, SplitData, load_split, resolve_data_dir
from core.devices import resolve_device, resolve_precision
from core.errors import ConfigError
from core.heads import Widths
from core.multitask import MultitaskModel
from core.plugins import Registries, is_opt_in, make_plugin_manager
from core.pooling import check_layers, pooled_width
from core.pretrained import load_encoder, resolve_checkpoint
from core.registry import Entry, RegistryError
from core.tasks import Task, bind
from core.tokenizer import Tokenizer


def plugin_manager(config: RunConfig) -> pluggy.PluginManager:
    return make_plugin_manager(enabled=config.plugins)


def component_config(config: RunConfig, entry: Entry) -> Any:
    """The attrs settings of a sampler/regularizer/topology, from ``config.components``."""
    if entry.config is None:
        return None
    values = config.components.get(entry.name, {})
    return build(entry.config, values, source=f"settings of {entry.name!r}", prefix=f"{entry.name}-")


def select_tasks(config: RunConfig, registries: Registries) -> dict[str, Task]:
    """The run's tasks, each bound to its registered kind and metrics."""
    try:
        specs = [registries.tasks[name].value for name in config.tasks]
    except RegistryError as error:
        raise ConfigError(f"--tasks: {error}") from None
    return {spec.name: bind(spec, registries.task_kinds, registries.metrics) for spec in specs}


def select_topology(config: RunConfig, registries: Registries, pm: pluggy.PluginManager) -> Entry:
    """``--topology`` if given; otherwise the one topology an enabled opt-in plugin provides.

    Every run (new, resumed, a study's trial, one loaded to evaluate) selects its topology here, where
    its sampler, topology and regularizers are all known: so this is also where settings of any other
    component are refused (:func:`check_components`)."""
    topology = _topology(config, registries, pm)
    check_components(config, registries, pm)
    return topology


def _topology(config: RunConfig, registries: Registries, pm: pluggy.PluginManager) -> Entry:
    if config.topology:
        return lookup(registries.topologies, config.topology, "--topology")
    opt_in = {name for name, plugin in pm.list_name_plugin() if is_opt_in(plugin)}
    offered = [entry for entry in registries.topologies if entry.plugin in opt_in]
    if len(offered) > 1:
        names = ", ".join(f"{e.name} (plugin {e.plugin})" for e in offered)
        raise ConfigError(f"--plugins: several enabled plugins provide a head topology ({names}); choose one with --topology")
    return offered[0] if offered else registries.topologies["independent"]


def select_regularizers(registries: Registries, pm: pluggy.PluginManager) -> list[Entry]:
    """The regularizers of the enabled plugins. Only opt-in plugins may register one, so none is ever
    on without ``--plugins`` naming its plugin."""
    for entry in registries.regularizers:
        if not is_opt_in(pm.get_plugin(entry.plugin)):
            raise ConfigError(f"plugin {entry.plugin!r} registers regularizer {entry.name!r} but is always on: a "
                              "regularizer must come from an opt-in plugin (PLATFORM_OPT_IN = True), which "
                              "--plugins enables")
    return list(registries.regularizers)


def active_components(config: RunConfig, registries: Registries, pm: pluggy.PluginManager) -> list[Entry]:
    """The sampler, the topology and the regularizers of a run, in this order."""
    sampler = lookup(registries.samplers, config.sampler, "--sampler")
    return [sampler, _topology(config, registries, pm), *select_regularizers(registries, pm)]


def check_components(config: RunConfig, registries: Registries, pm: pluggy.PluginManager) -> dict[str, dict]:
    """The settings of the run's active components, defaults filled in, by component name. Settings in
    ``config.components`` of any other component would be ignored: they are refused, naming them as
    options and saying what would make their component take part."""
    sampler, topology, *regularizers = active_components(config, registries, pm)
    active = {entry.name: entry for entry in (sampler, topology, *regularizers)}
    for name, settings in config.components.items():
        if settings and name not in active:
            chosen = {"samplers": f"--sampler {sampler.name}", "topologies": f"--topology {topology.name}"}
            raise ConfigError(_not_active(config, name, list(settings), registries, chosen))
    return {name: attrs.asdict(component_config(config, entry)) for name, entry in active.items()
            if entry.config is not None}


def _not_active(config: RunConfig, name: str, settings: list[str], registries: Registries,
                chosen: dict[str, str]) -> str:
    options = ", ".join(f"--{name}-{setting}".replace("_", "-") for setting in settings)
    what = f"{options} {'is a setting' if len(settings) == 1 else 'are settings'} of"
    kind, entry = _find(registries, name)
    if kind in chosen:  # registered for this run, but another one was chosen
        option = chosen[kind].split()[0]
        return (f"{what} {Registries.SORTS[kind][0]} {name!r}, which is not the run's ({chosen[kind]}): "
                f"use {option} {name}, or leave {options} out")
    kind, entry = _find(Registries(make_plugin_manager(enabled=None)), name)
    if entry is None:
        return (f"{what} {name!r}, which no installed plugin registers as a sampler, regularizer or topology "
                "(see `platform plugins`)")
    enable = f"--plugins {','.join((*config.plugins, entry.plugin))}"
    if kind == "samplers" or (kind == "topologies" and config.topology):
        enable += f" --{'sampler' if kind == 'samplers' else 'topology'} {name}"
    return (f"{what} {Registries.SORTS[kind][0]} {name!r} from plugin {entry.plugin!r}, which is not enabled: "
            f"add {enable}")


def _find(registries: Registries, name: str) -> tuple[str, Entry | None]:
    for kind in ("samplers", "regularizers", "topologies"):
        if name in getattr(registries, kind):
            return kind, getattr(registries, kind)[name]
    return "", None


def lookup(registry, name: str, option: str) -> Entry:
    """``registry[name]``, with an error that names the option the name came from."""
    try:
        return registry[name]
    except RegistryError as error:
        raise ConfigError(f"{option}: {error}") from None


def load_tokenizer(config: RunConfig) -> Tokenizer:
    source = resolve_checkpoint(config.checkpoint)
    return Tokenizer(source.vocab, lowercase=source.lowercase)


def load_data(config: RunConfig, tasks: dict[str, Task], tokenizer: Tokenizer, split: str) -> dict[str, SplitData]:
    """``split`` of every task that has it; ``validation`` is held out of the train files
    (``--validation-split``), which ``train`` then leaves out."""
    data_dir = resolve_data_dir(config.data_dir)
    file_split = "train" if split == VALIDATION else split
    return {name: load_split(task, split, data_dir=data_dir, tokenizer=tokenizer, max_length=config.max_length,
                             limit=config.limit, validation_split=config.validation_split)
            for name, task in tasks.items() if file_split in task.spec.files}


def build_model(config: RunConfig, tasks: dict[str, Task], topology: Entry) -> MultitaskModel:
    torch.manual_seed(config.seed)
    encoder = load_encoder(config.checkpoint, hidden_dropout_prob=config.dropout,
                           attention_probs_dropout_prob=config.dropout, seed=config.seed)
    try:
        check_layers(config.pooling, encoder.config.num_hidden_layers)
    except ValueError as error:
        raise ConfigError(f"--pooling: {error} (checkpoint {config.checkpoint})") from None
    hidden = encoder.config.hidden_size
    heads = topology.value(component_config(config, topology), list(tasks.values()),
                           Widths(pooled_width(config.pooling, hidden), hidden), config.dropout)
    missing = [name for name in tasks if name not in heads]
    if missing:
        raise ConfigError(f"topology {topology.name!r} built no head for task(s) {missing}")
    device = resolve_device(config.device)
    model = MultitaskModel(encoder, heads, tasks, config.pooling, resolve_precision(config.precision, device))
    model = model.to(device)
    if config.mode == "pretrain":
        model.freeze_encoder()
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"--mode pretrain freezes the encoder, and the heads of {', '.join(tasks)} have no "
                              "trainable parameters (a cosine head has none); use --mode finetune")
    return model
