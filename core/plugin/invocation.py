"""What a command receives beside its settings: :class:`Invocation`."""

from __future__ import annotations

from typing import Any

import attrs
import pluggy

from core.plugin.registries import Registries


@attrs.frozen
class Invocation:
    """The plugin manager and registries of the command (with the plugins ``--plugins`` enabled) and, for
    a command that configures a run, the configuration values: ``values``, those of ``--config FILE``
    with the options typed over them, and ``typed``, the typed ones alone (``"components"`` holds the
    components' settings by component name)."""

    pm: pluggy.PluginManager
    registries: Registries
    values: dict[str, Any] = attrs.Factory(dict)
    typed: dict[str, Any] = attrs.Factory(dict)
