"""What a plugin provides: :class:`Component`, one descriptor for every family of components.

A registration hook (``platform_samplers``, ``platform_tasks``, … in :mod:`core.plugin.hookspecs`)
returns the plugin's components of one family; the host checks them and registers them under their
names. Every family reads the same fields:

- ``name``: what the command line, a task spec or a saved configuration names it by;
- ``factory``: what the family builds from (typed per family: a :class:`~core.tasks.spec.TaskSpec` for
  a task, a :class:`~core.tasks.kind.TaskKind` for a task kind, a sampler's factory, …; the hook
  reference lists each);
- ``settings``: an attrs class whose fields become the options ``--<name>-<field>`` (made with
  :func:`core.base.settings.field`), given to the factory; None: no settings;
- ``space``: its own Optuna search space, ``space(trial, base) -> {setting: value}``, suggesting values of
  its settings; a study calls it only when the component takes part in the base configuration;
- ``default``: whether a run takes it when the configuration names none (the default sampler,
  topology and masker; the tasks ``platform run`` trains without ``--tasks``);
- ``help``: one line for ``platform plugins`` and the options' group.

The plugin that provided a component is recorded by the host as ``plugin``.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

import attrs

F = TypeVar("F")

SearchSpace = Callable[[Any, Any], "dict[str, Any] | None"]  # (trial, base RunConfig) -> suggested values


@attrs.frozen
class Component(Generic[F]):
    """A component of one family, as a plugin's registration hook returns it."""

    name: str
    factory: F
    settings: type | None = None
    space: SearchSpace | None = None
    default: bool = False
    help: str = ""
    plugin: str = ""  # set by the host when it registers the component

    @classmethod
    def of(cls, named: Any, **fields: Any) -> Component[Any]:
        """A component of an object that carries its own ``name`` (and ``description``): a task spec or a
        task kind, e.g. ``Component.of(SST, default=True)``."""
        fields.setdefault("help", getattr(named, "description", "") or "")
        return cls(getattr(named, "name", ""), named, **fields)
