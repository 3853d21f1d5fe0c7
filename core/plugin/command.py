"""What a subcommand of ``platform`` is: :class:`Command`, the factory of a component of ``platform_commands``.

The component's ``settings`` class gives the command's options (its fields, made with
:func:`core.base.settings.field`: ``metadata={"positional": "NAME"}`` for a positional argument,
``{"flag": True}`` for a switch, ``{"nargs": "+"}`` for several values). A command that ``configures`` a
run takes, beside its own options, every option of a run's configuration (``RunConfig``'s fields,
``--config FILE`` and the settings of the run's active components); one that configures ``pretrain``
those of ``PretrainConfig`` and its masker. The built-in commands are written the same way
(``core/cli/commands/``).
"""

from __future__ import annotations

from typing import Callable

import attrs

CONFIGURES = ("", "run", "pretrain")


@attrs.frozen
class Command:
    """``run(settings, invocation) -> exit status``: ``settings`` an instance of the component's settings
    class (None without one), ``invocation`` a :class:`core.plugin.invocation.Invocation`."""

    run: Callable[..., int]
    configures: str = attrs.field(default="", validator=attrs.validators.in_(CONFIGURES))
    description: str = ""  # the text of ``platform NAME --help`` below the usage (default: the component's help)
    interrupted: str = "everything written so far is kept"  # said when Ctrl-C stops the command
