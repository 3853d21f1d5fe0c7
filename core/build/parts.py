"""The one builder of a run's parts: from a configuration to its plugin manager, registries, components
and their settings, tasks, tokenizer, data and model, each built once, on first use.

Every command that builds something goes through here: ``platform run`` and a study's trials
(:mod:`core.build.run`), ``evaluate`` and ``predict`` (:mod:`core.build.trained`), ``pretrain``
(:mod:`core.build.pretrain`) and ``encode`` (:mod:`core.build.encode`). Every name a configuration holds
is checked here, at the boundary, with an error naming the option and what would be right; and the
settings of a component that takes no part in the run are refused, never ignored.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import attrs
import pluggy
import torch

from core.base.devices import resolve_device, resolve_precision
from core.base.errors import ConfigError
from core.base.settings import build
from core.data.tokenizer import Tokenizer
from core.encoder.loading import CheckpointSource, check_max_length, load_encoder, resolve_checkpoint
from core.encoder.pooling import check_layers, pooled_width
from core.encoder.pooling import parse as parse_pooling
from core.model.multitask import MultitaskModel
from core.model.topology import TopologyFactory
from core.plugin.component import Component
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import FAMILIES, WITH_SETTINGS, Registries
from core.plugin.registry import Registry, RegistryError
from core.experiment.config import RunConfig, load_data
from core.tasks.heads import Widths
from core.tasks.splits import SplitData
from core.tasks.task import Task
from core.train.balancer import BalancerFactory
from core.train.regularizer import RegularizerFactory
from core.train.sampling import SamplerFactory
from core.train.transform import ModelTransform


class Parts:
    """What any command's run is made of: the plugins (``plugins`` enabled), a checkpoint, and the settings
    of its components (``components``: component name -> {setting: value})."""

    def __init__(self, plugins: tuple[str, ...], checkpoint: str, components: Mapping[str, Mapping[str, Any]] = {},
                 pm: pluggy.PluginManager | None = None):
        self.plugins, self.checkpoint, self.components = plugins, checkpoint, components
        self._pm = pm

    @cached_property
    def pm(self) -> pluggy.PluginManager:
        return self._pm or make_plugin_manager(enabled=self.plugins)

    @cached_property
    def registries(self) -> Registries:
        return Registries(self.pm)

    @cached_property
    def source(self) -> CheckpointSource:
        """The checkpoint, read by the registered architecture its config.json names."""
        return resolve_checkpoint(self.checkpoint, self.registries.encoders.factories())

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return self.source.tokenizer()

    def task(self, name: str, option: str = "--tasks") -> Task:
        """Task ``name`` bound to its kind and metrics."""
        return self.registries.bind(lookup(self.registries.tasks, name, option).factory)

    def settings(self, component: Component[Any]) -> Any:
        """The component's settings (an instance of its settings class) from the configuration; None when
        it has no settings class."""
        if component.settings is None:
            return None
        values = self.components.get(component.name, {})
        return build(component.settings, dict(values), source=f"settings of {component.name!r}",
                     prefix=f"{component.name}-")


class RunParts(Parts):
    """The parts of a training run (``platform run``, a study's trial, a trained run rebuilt)."""

    def __init__(self, config: RunConfig, pm: pluggy.PluginManager | None = None):
        super().__init__(config.plugins, config.checkpoint, config.components, pm)
        self.config = config

    @cached_property
    def tasks(self) -> dict[str, Task]:
        return {name: self.task(name) for name in self.config.tasks}

    @cached_property
    def sampler(self) -> Component[SamplerFactory]:
        """``--sampler``, or the default sampler."""
        if not self.config.sampler:
            return default_of(self.registries.samplers)
        return lookup(self.registries.samplers, self.config.sampler, "--sampler")

    @cached_property
    def topology(self) -> Component[TopologyFactory]:
        """``--topology`` if given; otherwise the one topology an enabled opt-in plugin provides, else
        the default one."""
        return chosen(self.registries, "topologies", self.config.topology)

    @cached_property
    def balancer(self) -> Component[BalancerFactory]:
        """``--balancer`` if given; otherwise the one balancer an enabled opt-in plugin provides, else the
        default one (equal weighting)."""
        return chosen(self.registries, "balancers", self.config.balancer)

    @cached_property
    def regularizers(self) -> list[Component[RegularizerFactory]]:
        """The regularizers of the enabled plugins (only opt-in plugins may provide one)."""
        return list(self.registries.regularizers)

    @cached_property
    def transforms(self) -> list[Component[ModelTransform]]:
        """The model transforms of the enabled plugins (only opt-in plugins may provide one), in the order
        of ``--plugins``."""
        return list(self.registries.model_transforms)

    def active(self) -> list[Component[Any]]:
        """The run's sampler, topology, balancer, regularizers and model transforms, in this order."""
        return [self.sampler, self.topology, self.balancer, *self.regularizers, *self.transforms]

    def chosen(self) -> dict[str, str]:
        """The name of the run's component of each family that takes one: sampler, topology, balancer."""
        return {"samplers": self.sampler.name, "topologies": self.topology.name, "balancers": self.balancer.name}

    def check(self) -> dict[str, dict[str, Any]]:
        """Check every name the configuration holds (tasks, sampler, topology) and the settings of its
        components before anything is loaded; returns :meth:`check_components`."""
        if not self.tasks:  # binding them checks their names, kinds and metrics
            raise ConfigError("--tasks: no task to train")
        check_max_length(self.source, self.config.max_length)
        self.check_architecture()
        if self.config.update != "summed" and not self.balancer.default:
            raise ConfigError(f"balancer {self.balancer.name!r} makes one update of every task's loss in a step: "
                              "add --update summed (--update sequential updates on each task batch alone)")
        return self.check_components()

    def check_architecture(self) -> None:
        """``--pooling pooler`` needs an architecture with a pooler."""
        architecture, kind = self.source.architecture, self.source.model_type
        if parse_pooling(self.config.pooling)[0] == "pooler" and not architecture.pooler:
            raise ConfigError(f"--pooling pooler: a {kind} checkpoint ({self.config.checkpoint}) has no pooler; "
                              "use cls, mean, cls-concat-K or cls-mean-K")

    def check_components(self) -> dict[str, dict[str, Any]]:
        """The settings of the run's active components, defaults filled in, by component name. Settings in
        ``config.components`` of any other component would be ignored: they are refused, naming them as
        options and saying what would make their component take part."""
        active = {component.name: component for component in self.active()}
        for name, settings in self.config.components.items():
            if settings and name not in active:
                raise ConfigError(not_active(self.config, name, list(settings), self.registries, self.chosen()))
        return {name: attrs.asdict(self.settings(component)) for name, component in active.items()
                if component.settings is not None}

    def data(self, split: str) -> dict[str, SplitData]:
        return load_data(self.config, self.tasks, self.tokenizer, split)

    def model(self) -> MultitaskModel:
        """A new model: the encoder from the checkpoint and the topology's heads, seeded by ``--seed``, changed
        by the enabled plugins' model transforms (:mod:`core.train.transform`) before it moves to its device."""
        config, tasks = self.config, self.tasks
        torch.manual_seed(config.seed)
        encoder = load_encoder(self.source, hidden_dropout_prob=config.dropout,
                               attention_probs_dropout_prob=config.dropout, seed=config.seed)
        try:
            check_layers(config.pooling, encoder.config.num_hidden_layers)
        except ValueError as error:
            raise ConfigError(f"--pooling: {error} (checkpoint {config.checkpoint})") from None
        hidden = encoder.config.hidden_size
        heads = self.topology.factory(self.settings(self.topology), list(tasks.values()),
                                      Widths(pooled_width(config.pooling, hidden), hidden), config.dropout)
        missing = [name for name in tasks if name not in heads]
        if missing:
            raise ConfigError(f"topology {self.topology.name!r} built no head for task(s) {missing}")
        device = resolve_device(config.device)
        model = MultitaskModel(encoder, heads, tasks, config.pooling, resolve_precision(config.precision, device))
        for transform in self.transforms:
            transform.factory(self.settings(transform), model, config)
        model = model.to(device)
        if config.mode == "pretrain":
            model.freeze_encoder()
            if not any(p.requires_grad for p in model.parameters()):
                raise ConfigError(f"--mode pretrain freezes the encoder, and the heads of {', '.join(tasks)} have "
                                  "no trainable parameters (a cosine head has none); use --mode finetune")
        if self.transforms and not any(p.requires_grad for p in model.parameters()):
            names = ", ".join(f"{t.name} (plugin {t.plugin})" for t in self.transforms)
            raise ConfigError(f"--plugins: the model transforms {names} left no parameter to train")
        return model


def with_defaults(config: RunConfig, registries: Registries) -> RunConfig:
    """``config`` with the components it names none of filled in from the registries: the default tasks
    (``--tasks`` not given) and the default sampler."""
    changes: dict[str, Any] = {}
    if not config.tasks:
        changes["tasks"] = tuple(component.name for component in registries.tasks.defaults())
        if not changes["tasks"]:
            raise ConfigError("--tasks: no task given, and no installed plugin marks a task as default")
    if not config.sampler:
        changes["sampler"] = default_of(registries.samplers).name
    return attrs.evolve(config, **changes) if changes else config


def default_of(registry: Registry[Any]) -> Component[Any]:
    """The one default component of a family (the default sampler, topology, balancer or masker)."""
    defaults = registry.defaults()
    if not defaults:
        raise ConfigError(f"no installed plugin provides a default {registry.what}; name one "
                          f"({', '.join(registry.names()) or 'none is installed'})")
    return defaults[0]


def chosen(registries: Registries, family: str, name: str) -> Component[Any]:
    """Component ``name`` of ``family`` (topologies, balancers: families an opt-in plugin's component replaces
    the default of); without a name, the one an enabled opt-in plugin provides, else the default."""
    registry, option = registries.family(family), f"--{FAMILIES[family].what}"
    if name:
        return lookup(registry, name, option)
    offered = [component for component in registry if registries.opt_in(component)]
    if len(offered) > 1:
        names = ", ".join(f"{c.name} (plugin {c.plugin})" for c in offered)
        raise ConfigError(f"--plugins: several enabled plugins provide a {FAMILIES[family].what} ({names}); "
                          f"choose one with {option}")
    return offered[0] if offered else default_of(registry)


def not_active(config: Any, name: str, settings: list[str], registries: Registries, chosen: dict[str, str]) -> str:
    """Why settings of component ``name`` take no part in the run, and what would make it take part;
    ``chosen``: the name of the run's component of each family it takes one of (family -> name)."""
    options = ", ".join(f"--{name}-{setting}".replace("_", "-") for setting in settings)
    what = f"{options} {'is a setting' if len(settings) == 1 else 'are settings'} of"
    family, found = find(registries, name)
    if family in chosen:  # available to this run, but another one was chosen
        option = f"--{FAMILIES[family].what}"
        return (f"{what} {FAMILIES[family].what} {name!r}, which is not the run's ({option} {chosen[family]}): "
                f"use {option} {name}, or leave {options} out")
    family, found = find(Registries(make_plugin_manager(enabled=None)), name)
    if found is None:
        return (f"{what} {name!r}, which no installed plugin provides as a sampler, regularizer, model transform, "
                "topology, balancer or masker (see `platform plugins`)")
    enable = f"--plugins {','.join((*config.plugins, found.plugin))}"
    if family in ("samplers", "maskers") or (family in ("topologies", "balancers")
                                             and bool(getattr(config, FAMILIES[family].what, ""))):
        enable += f" --{FAMILIES[family].what} {name}"
    return (f"{what} {FAMILIES[family].what} {name!r} from plugin {found.plugin!r}, which is not enabled: "
            f"add {enable}")


def find(registries: Registries, name: str) -> tuple[str, Component[Any] | None]:
    """The family and component of a component with settings named ``name``."""
    for family in WITH_SETTINGS:
        registry = registries.family(family)
        if name in registry:
            return family, registry[name]
    return "", None


def lookup(registry: Registry[Any], name: str, option: str) -> Component[Any]:
    """``registry[name]``, with an error that names the option the name came from."""
    try:
        return registry[name]
    except RegistryError as error:
        raise ConfigError(f"{option}: {error}") from None
