"""The plugin manager: the distribution's own plugins, third-party entry points, and ``--plugins`` selection.

Every plugin, built-in or not, is a module named under the entry-point group ``platform``: the built-in
ones by this distribution's ``pyproject.toml`` (``[project.entry-points.platform]``), so this module
names none of them and they are registered through the same ``register`` call a third-party package's
plugins go through. A plugin module that sets ``PLATFORM_OPT_IN = True`` takes part in a run only when
named in ``--plugins``; all others are always on. Environment variables: ``PLATFORM_LOAD_PLUGINS`` (a
comma list) restricts which third-party entry points load, and ``PLATFORM_TRACE_HOOKS=1`` prints every
hook call.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

import pluggy

from core.base.errors import PlatformError
from core.plugin import hookspecs
from core.plugin.registry import Registry
from core.tasks.kind import TaskKind
from core.tasks.spec import TaskSpec

DISTRIBUTION = "multitask-platform"  # whose entry points are the built-in plugins
OPT_IN = "PLATFORM_OPT_IN"


class PluginError(PlatformError):
    """A plugin could not be loaded, or ``--plugins`` named one that does not exist."""


def make_plugin_manager(enabled: Iterable[str] | None = (), *, third_party: bool = True) -> pluggy.PluginManager:
    """A fresh manager holding the always-on plugins and the opt-in ones named in ``enabled``
    (every installed plugin when ``enabled`` is None, as ``platform plugins`` lists them); with
    ``third_party`` False, the distribution's own plugins only.

    Always-on plugins are registered first, the built-in ones before third-party ones; then the opt-in
    ones in the order ``enabled`` names them (so a run's regularizers act in the order of ``--plugins``)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    builtin, others = plugin_entry_points()
    allow = os.environ.get("PLATFORM_LOAD_PLUGINS")
    allowed = None if allow is None else {name.strip() for name in allow.split(",")}
    modules: dict[str, object] = {ep.name: ep.load() for ep in builtin}
    if third_party:
        for ep in others:
            if (allowed is None or ep.name in allowed) and ep.name not in modules:
                modules[ep.name] = ep.load()
    optional = [name for name, module in modules.items() if is_opt_in(module)]
    chosen = sorted(optional) if enabled is None else list(enabled)
    unknown = [name for name in chosen if name not in optional]
    if unknown:
        always = sorted(name for name in modules if name not in optional)
        raise PluginError(f"unknown plugin(s) in --plugins: {', '.join(unknown)}; "
                          f"available: {', '.join(sorted(optional)) or 'none'} (always on: {', '.join(always)})")
    for name in [*(name for name in modules if name not in optional), *chosen]:
        pm.register(modules[name], name=name)
    pm.check_pending()
    if os.environ.get("PLATFORM_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm


def plugin_entry_points() -> tuple[list[EntryPoint], list[EntryPoint]]:
    """The entry points of group ``platform``: this distribution's (its built-in plugins, in the order
    ``pyproject.toml`` lists them), and every other distribution's."""
    builtin, others = [], []
    for ep in entry_points(group=hookspecs.PROJECT):
        (builtin if ep.dist is not None and ep.dist.name == DISTRIBUTION else others).append(ep)
    if not builtin:
        raise PluginError(f"no built-in plugins found: the distribution {DISTRIBUTION!r} is not installed "
                          "(run `make venv`, or `pip install -e .` in the repository)")
    return builtin, others


def is_opt_in(plugin: object) -> bool:
    return bool(getattr(plugin, OPT_IN, False))


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
