"""The plugin manager: built-in plugins, third-party entry points, and ``--plugins`` selection.

Built-in plugins are ordinary modules listed in ``DEFAULT_PLUGINS`` and registered through the same
``register`` call a third-party package's plugins go through (entry-point group ``platform``). A
plugin module that sets ``PLATFORM_OPT_IN = True`` takes part in a run only when named in
``--plugins``; all others are always on. Environment variables: ``PLATFORM_LOAD_PLUGINS`` (a comma
list) restricts which entry points load, and ``PLATFORM_TRACE_HOOKS=1`` prints every hook call.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

import pluggy

from core import hookspecs
from core.errors import PlatformError
from core.kinds import TaskKind
from core.registry import Registry
from core.tasks import TaskSpec

DEFAULT_PLUGINS = (
    "plugins.kinds",
    "plugins.tagging",
    "plugins.metrics",
    "tasks.sst",
    "tasks.cfimdb",
    "tasks.quora",
    "tasks.sts",
    "plugins.core_space",
    "plugins.samplers",
    "plugins.independent",
    "plugins.masking",
    "plugins.tensorboard",
    "plugins.smart",
    "plugins.rlayer",
    "plugins.bam",
)

OPT_IN = "PLATFORM_OPT_IN"


class PluginError(PlatformError):
    """A plugin could not be loaded, or ``--plugins`` named one that does not exist."""


def make_plugin_manager(enabled: Iterable[str] | None = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager holding the always-on plugins and the opt-in ones named in ``enabled``
    (every installed plugin when ``enabled`` is None, as ``platform plugins`` lists them)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name.rpartition(".")[2])
    if entry_points:
        _load_entry_points(pm)
    if enabled is not None:
        _select(pm, list(enabled))
    pm.check_pending()
    if os.environ.get("PLATFORM_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow = os.environ.get("PLATFORM_LOAD_PLUGINS")
    if allow is None:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group=hookspecs.PROJECT):
        if ep.name in {a.strip() for a in allow.split(",")} and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)


def is_opt_in(plugin: object) -> bool:
    return bool(getattr(plugin, OPT_IN, False))


def _select(pm: pluggy.PluginManager, enabled: list[str]) -> None:
    optional = sorted(name for name, plugin in pm.list_name_plugin() if is_opt_in(plugin))
    unknown = [name for name in enabled if name not in optional]
    if unknown:
        always = sorted(name for name, plugin in pm.list_name_plugin() if not is_opt_in(plugin))
        raise PluginError(
            f"unknown plugin(s) in --plugins: {', '.join(unknown)}; "
            f"available: {', '.join(optional) or 'none'} (always on: {', '.join(always)})"
        )
    for name in optional:
        if name not in enabled:
            pm.unregister(name=name)


class Registries:
    """Every registry of a run, filled by calling the registration hooks of ``pm``'s plugins through
    pluggy (in its call order, so tracing shows them), one plugin at a time: each gets a ``register``
    callback bound to it, so a duplicate name is reported naming both plugins."""

    SORTS = {  # registry -> (what one component is called, the type it must have, whether it names itself)
        "task_kinds": ("task kind", TaskKind, True),
        "metrics": ("metric", None, False),
        "tasks": ("task", TaskSpec, True),
        "samplers": ("sampler", None, False),
        "regularizers": ("regularizer", None, False),
        "topologies": ("topology", None, False),
        "maskers": ("masker", None, False),
        "search_spaces": ("search space", None, False),
    }

    def __init__(self, pm: pluggy.PluginManager):
        for attr, (what, expects, named) in self.SORTS.items():
            registry = Registry(what, expects, named)
            name = f"platform_register_{attr}"
            impls = getattr(pm.hook, name).get_hookimpls()
            for impl in reversed(impls):  # pluggy calls the last registered first
                others = [other.plugin for other in impls if other is not impl]
                pm.subset_hook_caller(name, remove_plugins=others)(register=registry.register_for(impl.plugin_name))
            setattr(self, attr, registry)

    task_kinds: Registry
    metrics: Registry
    tasks: Registry
    samplers: Registry
    regularizers: Registry
    topologies: Registry
    maskers: Registry
    search_spaces: Registry
