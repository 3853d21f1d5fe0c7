"""``platform plugins``: every installed plugin, what it provides, its hooks; broken ones with the reason."""

from __future__ import annotations

from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation
from core.plugin.manager import is_opt_in, make_plugin_manager
from core.plugin.registries import FAMILIES, Registries


def plugins_command(settings: None, invocation: Invocation) -> int:
    pm = make_plugin_manager(enabled=None)
    registries = Registries(pm)
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        status = "opt-in (--plugins " + name + ")" if is_opt_in(plugin) else "always on"
        print(f"{name}  [{status}]  {getattr(plugin, '__name__', type(plugin).__name__)}")
        for attr, family in FAMILIES.items():
            for component in registries.family(attr):
                if component.plugin == name:
                    default = " (default)" if component.default else ""
                    print(f"    {family.what} {component.name}{default}: {component.help}")
        print(f"    hooks: {', '.join(hooks)}")
    for attr, family in FAMILIES.items():
        for name, plugins in registries.family(attr).conflicts.items():
            print(f"conflict: {family.what} {name!r} is provided by {' and by '.join(plugins)}; neither is used")
    for name, reason in pm.broken.items():
        print(f"{name}  [broken]  {reason}")
    return 0


COMMAND = Component("plugins", Command(plugins_command), help="list every plugin, what it provides, and its hooks")
