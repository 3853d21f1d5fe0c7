"""Every registry of a command, filled from the registration hooks of its plugin manager.

Each registration hook is called through pluggy (in its call order, so ``PLATFORM_TRACE_HOOKS`` shows
the calls), one plugin at a time, so that what a plugin returned is registered as that plugin's and a
duplicate name is reported naming both plugins.
"""

from __future__ import annotations

from typing import Any, Iterable

import pluggy

from core.encoder.architecture import Architecture
from core.model.topology import TopologyFactory
from core.plugin.command import Command
from core.plugin.component import Component, SearchSpace
from core.plugin.manager import is_opt_in
from core.plugin.registry import Family, Registry, RegistryError
from core.pretrain.masking import MaskerFactory
from core.tasks.kind import TaskKind
from core.tasks.spec import Metric, TaskSpec
from core.tasks.task import Task, bind
from core.train.balancer import BalancerFactory
from core.train.regularizer import RegularizerFactory
from core.train.sampling import SamplerFactory
from core.train.transform import ModelTransform

TASK_KINDS: Family[TaskKind] = Family("platform_task_kinds", "task kind", TaskKind)
METRICS: Family[Metric] = Family("platform_metrics", "metric")
TASKS: Family[TaskSpec] = Family("platform_tasks", "task", TaskSpec)
SAMPLERS: Family[SamplerFactory] = Family("platform_samplers", "sampler", one_default=True)
REGULARIZERS: Family[RegularizerFactory] = Family("platform_regularizers", "regularizer", opt_in_only=True)
MODEL_TRANSFORMS: Family[ModelTransform] = Family("platform_model_transforms", "model transform", opt_in_only=True)
TOPOLOGIES: Family[TopologyFactory] = Family("platform_topologies", "topology", one_default=True)
BALANCERS: Family[BalancerFactory] = Family("platform_balancers", "balancer", one_default=True)
MASKERS: Family[MaskerFactory] = Family("platform_maskers", "masker", one_default=True)
SEARCH_SPACES: Family[SearchSpace] = Family("platform_search_spaces", "search space")
COMMANDS: Family[Command] = Family("platform_commands", "command", Command)
ENCODERS: Family[Architecture] = Family("platform_encoders", "encoder architecture", Architecture)

FAMILIES: dict[str, Family[Any]] = {"task_kinds": TASK_KINDS, "metrics": METRICS, "tasks": TASKS, "samplers": SAMPLERS,
            "regularizers": REGULARIZERS, "model_transforms": MODEL_TRANSFORMS, "topologies": TOPOLOGIES,
            "balancers": BALANCERS, "maskers": MASKERS, "search_spaces": SEARCH_SPACES, "commands": COMMANDS,
            "encoders": ENCODERS}
# the families whose settings are run options
WITH_SETTINGS = ("samplers", "regularizers", "model_transforms", "topologies", "balancers", "maskers")


class Registries:
    """The components of every family that the plugins of ``pm`` provide."""

    task_kinds: Registry[TaskKind]
    metrics: Registry[Metric]
    tasks: Registry[TaskSpec]
    samplers: Registry[SamplerFactory]
    regularizers: Registry[RegularizerFactory]
    model_transforms: Registry[ModelTransform]
    topologies: Registry[TopologyFactory]
    balancers: Registry[BalancerFactory]
    maskers: Registry[MaskerFactory]
    search_spaces: Registry[SearchSpace]
    commands: Registry[Command]
    encoders: Registry[Architecture]

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        for attr, family in FAMILIES.items():
            registry: Registry[Any] = Registry(family)
            for plugin, components in _provided(pm, family.hook):
                for component in components:
                    registry.add(component, plugin)
            for component in registry:
                if family.opt_in_only and not is_opt_in(pm.get_plugin(component.plugin)):
                    raise RegistryError(f"plugin {component.plugin!r} provides {family.what} {component.name!r} but "
                                        f"is always on: a {family.what} must come from an opt-in plugin "
                                        "(PLATFORM_OPT_IN = True), which --plugins enables")
            defaults = [c for c in registry.defaults() if not is_opt_in(pm.get_plugin(c.plugin))]
            if family.one_default and len(defaults) > 1:
                names = ", ".join(f"{c.name} (plugin {c.plugin})" for c in defaults)
                raise RegistryError(f"several always-on plugins provide a default {family.what}: {names}")
            setattr(self, attr, registry)

    def family(self, attr: str) -> Registry[Any]:
        return getattr(self, attr)

    def bind(self, spec: TaskSpec) -> Task:
        """``spec`` bound to its registered kind and metrics."""
        return bind(spec, self.task_kinds.factories(), self.metrics.factories())

    def what_of(self, component: Component[Any]) -> str:
        """What a registered component is: "sampler", "regularizer", ..."""
        for attr, family in FAMILIES.items():
            registry = self.family(attr)
            if component.name in registry.names() and registry[component.name] is component:
                return family.what
        return "component"

    def opt_in(self, component: Component[Any]) -> bool:
        """Whether ``component`` comes from an opt-in plugin (one that ``--plugins`` enabled)."""
        return is_opt_in(self.pm.get_plugin(component.plugin))


def _provided(pm: pluggy.PluginManager, hook: str) -> Iterable[tuple[str, Iterable[Any]]]:
    """(plugin name, what its implementation of ``hook`` returned), in registration order."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    for impl in impls:  # in registration order: always-on plugins first, then opt-in ones as --plugins lists them
        others = [other.plugin for other in impls if other is not impl]
        results = pm.subset_hook_caller(hook, remove_plugins=others)()
        for result in results:
            if result is None or isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
                raise RegistryError(f"plugin {impl.plugin_name!r}: {hook} must return an iterable of Components, "
                                    f"got {result!r}")
            yield impl.plugin_name, list(result)
