"""The built-in commands of ``platform``: a plugin (entry point ``commands``) that provides them through
``platform_commands``, as a third-party package adds its own; one module per command."""

from __future__ import annotations

from core.cli.commands import checkpoints, encode, evaluate, plugins, predict, pretrain, report, run
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl


@hookimpl
def platform_commands() -> list[Component[Command]]:
    return [module.COMMAND for module in (run, pretrain, evaluate, predict, encode, report, plugins,
                                      checkpoints)]
