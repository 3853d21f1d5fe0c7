"""The plugin manager: the distribution's own plugins, third-party entry points, and ``--plugins`` selection.

Every plugin, built-in or not, is a module named under the entry-point group ``platform``: the built-in
ones by this distribution's ``pyproject.toml`` (``[project.entry-points.platform]``), so this module
names none of them and they are registered through the same ``register`` call a third-party package's
plugins go through. A plugin module that sets ``PLATFORM_OPT_IN = True`` takes part in a run only when
named in ``--plugins``; all others are always on. Environment variables: ``PLATFORM_LOAD_PLUGINS`` (a
comma list) restricts which third-party entry points load, and ``PLATFORM_TRACE_HOOKS=1`` prints every
hook call. A plugin may declare hooks of its own for other plugins to implement (a class of
``@hookspec`` functions as ``PLATFORM_HOOKSPECS``); they are added whether or not the plugin is enabled.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

import pluggy

from core.base.errors import PlatformError
from core.plugin import hookspecs

DISTRIBUTION = "multitask-platform"  # whose entry points are the built-in plugins
OPT_IN = "PLATFORM_OPT_IN"

log = logging.getLogger("platform")


class PluginError(PlatformError):
    """A plugin could not be loaded, or ``--plugins`` named one that does not exist."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, which also knows the plugins that could not be loaded (``broken``: name -> reason)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.broken: dict[str, str] = {}


def make_plugin_manager(enabled: Iterable[str] | None = (), *, third_party: bool = True) -> PluginManager:
    """A fresh manager holding the always-on plugins and the opt-in ones named in ``enabled``
    (every installed plugin when ``enabled`` is None, as ``platform plugins`` lists them); with
    ``third_party`` False, the distribution's own plugins only.

    Always-on plugins are registered first, the built-in ones before third-party ones; then the opt-in
    ones in the order ``enabled`` names them (so a run's regularizers act in the order of ``--plugins``).
    A plugin whose module fails to import is left out and recorded in ``broken`` with the reason, so that
    commands that do not use it still run; naming it in ``enabled`` is an error that gives the reason."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    builtin, others = plugin_entry_points()
    allow = os.environ.get("PLATFORM_LOAD_PLUGINS")
    allowed = None if allow is None else {name.strip() for name in allow.split(",")}
    modules: dict[str, object] = {}
    for ep in [*builtin, *(ep for ep in others if third_party and (allowed is None or ep.name in allowed))]:
        if ep.name in modules or ep.name in pm.broken:
            continue
        try:
            modules[ep.name] = ep.load()
        except Exception as error:  # a third party's bug must not take every command down
            pm.broken[ep.name] = f"importing {ep.value} failed: {type(error).__name__}: {error}"
            log.warning("plugin %r is broken and left out: %s", ep.name, pm.broken[ep.name])
    for module in modules.values():  # hooks that plugins declare for others (SMART's divergences, say)
        if getattr(module, "PLATFORM_HOOKSPECS", None) is not None:
            pm.add_hookspecs(getattr(module, "PLATFORM_HOOKSPECS"))
    optional = [name for name, module in modules.items() if is_opt_in(module)]
    chosen = sorted(optional) if enabled is None else list(enabled)
    broken = [name for name in chosen if name in pm.broken]
    if broken:
        raise PluginError("; ".join(f"plugin {name!r} cannot be enabled: {pm.broken[name]}" for name in broken))
    unknown = [name for name in chosen if name not in optional]
    if unknown:
        always = sorted(name for name in modules if name not in optional)
        raise PluginError(f"unknown plugin(s) in --plugins: {', '.join(unknown)}; "
                          f"available: {', '.join(sorted(optional)) or 'none'} (always on: {', '.join(always)})")
    for name in [*(name for name in modules if name not in optional), *chosen]:
        try:
            pm.register(modules[name], name=name)
        except pluggy.PluginValidationError as error:
            _break(pm, name, str(error), chosen)
            continue
        if not pm.get_hookcallers(modules[name]):
            log.warning("plugin %r (%s) implements no platform hook: is @hookimpl missing?", name,
                        getattr(modules[name], "__name__", modules[name]))
    for hook, caller in vars(pm.hook).items():  # an implementation of a hook nobody declared (a typo, an old name)
        if isinstance(caller, pluggy.HookCaller) and caller.spec is None:
            for impl in caller.get_hookimpls():
                _break(pm, impl.plugin_name, f"it implements {hook}, which is no platform hook (see docs/hooks.md)",
                       chosen)
    pm.check_pending()
    if os.environ.get("PLATFORM_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm


def _break(pm: PluginManager, name: str, reason: str, chosen: list[str]) -> None:
    """Leave plugin ``name`` out as broken, or refuse it when the command enabled it."""
    if name in chosen:
        raise PluginError(f"plugin {name!r} cannot be enabled: {reason}")
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    pm.broken[name] = reason
    log.warning("plugin %r is broken and left out: %s", name, reason)


def plugin_entry_points() -> tuple[list[EntryPoint], list[EntryPoint]]:
    """The entry points of group ``platform``: this distribution's (its built-in plugins), and every other
    distribution's, by distribution name."""
    builtin: list[EntryPoint] = []
    others: list[EntryPoint] = []
    for ep in entry_points(group=hookspecs.PROJECT):
        (builtin if ep.dist is not None and ep.dist.name == DISTRIBUTION else others).append(ep)
    others.sort(key=lambda ep: (ep.dist.name if ep.dist is not None else "", ep.name))  # not the order of sys.path
    if not builtin:
        raise PluginError(f"no built-in plugins found: the distribution {DISTRIBUTION!r} is not installed "
                          "(run `make venv`, or `pip install -e .` in the repository)")
    return builtin, others


def is_opt_in(plugin: object) -> bool:
    return bool(getattr(plugin, OPT_IN, False))
