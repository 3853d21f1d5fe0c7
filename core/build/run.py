"""From a :class:`RunConfig` to the live parts of a run: tasks, tokenizer, data, model, optimizer,
schedule, sampler and regularizers. Every name in the configuration is checked here, at the boundary,
with an error that names the option and what would be right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pluggy
import torch

from core.base import distributed
from core.base import files as checkpoints
from core.base.devices import resolve_device, resolve_precision
from core.base.errors import ConfigError
from core.base.settings import build
from core.data.tokenizer import Tokenizer
from core.encoder.loading import check_max_length, load_encoder, resolve_checkpoint
from core.encoder.pooling import check_layers, pooled_width
from core.model.multitask import MultitaskModel
from core.plugin.manager import Registries, is_opt_in, make_plugin_manager
from core.plugin.registry import Entry, RegistryError
from core.runs import folder as runfolder
from core.runs.config import RunConfig, load_data
from core.tasks.heads import Widths
from core.tasks.splits import VALIDATION
from core.tasks.task import Task, bind
from core.train import checkpointing as runfiles
from core.train.context import RunContext
from core.train.optim import build_optimizer


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
    check_max_length(source, config.max_length)
    return Tokenizer(source.vocab, lowercase=source.lowercase)




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


def prepare(config: RunConfig, pm: pluggy.PluginManager | None = None, *, resume: bool = False,
            overwrite: bool = False) -> RunContext:
    """Build every part of a run from ``config``. A new run claims its folder (see
    :func:`core.runfolder.claim`; ``overwrite`` clears an earlier run there); with ``resume``, ``config``
    must be the run's saved one (but for :data:`core.runfolder.MAY_CHANGE_ON_RESUME`) and ``last.pt`` is
    restored."""
    distributed.setup(resolve_device(config.device))
    config = distributed.on_main(runfolder.finalize, config)  # one folder name (and precision) for every process
    output_dir = Path(config.output_dir)
    has_last = False
    if resume:
        config = distributed.on_main(runfolder.check_resumable, config, output_dir)
        has_last = distributed.on_main((output_dir / "last.pt").exists)
        if not has_last:
            distributed.on_main(runfolder.check_restartable, output_dir)
    else:
        distributed.on_main(runfolder.claim, output_dir, overwrite=overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    pm = pm or plugin_manager(config)
    registries = Registries(pm)
    tasks = select_tasks(config, registries)
    sampler_entry = lookup(registries.samplers, config.sampler, "--sampler")
    topology = select_topology(config, registries, pm)
    tokenizer = load_tokenizer(config)
    with distributed.local_main_first():  # one process per node fills the tokenization cache
        train_data = load_data(config, tasks, tokenizer, "train")
        dev_data = load_data(config, tasks, tokenizer, "dev")
        validation_data = load_data(config, tasks, tokenizer, VALIDATION) if config.validation_split else {}
    sizes = {name: len(data) for name, data in train_data.items()}
    sampler = sampler_entry.value(component_config(config, sampler_entry), sizes,
                                  config.batch_size, config.seed, config.epochs)
    model = build_model(config, tasks, topology)
    ddp = distributed.wrap(model)
    distributed.seed(config.seed)
    first = sampler.plan(0)  # every epoch's plan has its shape: counted once, here
    updates_per_epoch = sum(len(step) if config.update == "sequential" else 1 for step in first)
    optimizer, scheduler = build_optimizer(config, model, updates_per_epoch * config.epochs)
    regularizers = {entry.name: entry.value(component_config(config, entry), model)
                    for entry in select_regularizers(registries, pm)}
    run = RunContext(config, pm, output_dir, model, tokenizer, train_data, dev_data, sampler, optimizer,
                     scheduler, regularizers, steps_per_epoch=len(first),
                     examples_per_epoch=sum(len(indices) for step in first for _, indices in step),
                     validation_data=validation_data, loss_weights=config.task_loss_weights, ddp=ddp)
    if distributed.is_main():
        output_dir.mkdir(parents=True, exist_ok=True)
    if has_last:
        runfiles.restore(run, distributed.on_main(checkpoints.load, output_dir / "last.pt"))
        runfiles.save_best_if_behind(run)
    if distributed.is_main():
        config.save(output_dir / "config.json")
    return run
