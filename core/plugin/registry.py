"""Named components contributed by plugins: task kinds, metrics, tasks, samplers, regularizers,
topologies, search spaces.

Registration hooks receive a ``register`` callback bound to the calling plugin, so the host checks
names and types in one place, reports a duplicate name naming both plugins, and a lookup of an
unknown name lists what is available. Components that carry their own name (a ``TaskSpec``, a
``TaskKind``) are registered as ``register(component)``; all others as ``register(name, value,
config=SettingsClass, help="...")``.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Protocol

import attrs

from core.base.errors import PlatformError


class RegistryError(PlatformError):
    """A component was registered twice or wrongly, or asked for under a name nobody registered."""


class RegisterNamed(Protocol):
    """``register(component, help="")``: for components with a ``name`` of their own (tasks, task kinds)."""

    def __call__(self, component: Any, *, help: str = "") -> None: ...


class Register(Protocol):
    """``register(name, value, config=SettingsClass, help="")``: for every other component."""

    def __call__(self, name: str, value: Any, *, config: type | None = None, help: str = "") -> None: ...


@attrs.frozen
class Entry:
    name: str
    value: Any
    plugin: str
    config: type | None = None
    help: str = ""


class Registry:
    """Components of one sort (``task``, ``sampler``, ...) by name. ``expects`` is the type every
    component must have (None: any callable); ``named`` registries take the name from the component."""

    def __init__(self, what: str, expects: type | None = None, named: bool = False):
        self.what, self.expects, self.named = what, expects, named
        self._entries: dict[str, Entry] = {}

    def register_for(self, plugin: str) -> Register | RegisterNamed:
        """The ``register`` callback handed to ``plugin``'s registration hook."""

        def register_named(component: Any, *, help: str = "") -> None:
            add(getattr(component, "name", None), component, None, help)

        def register(name: str, value: Any, *, config: type | None = None, help: str = "") -> None:
            add(name, value, config, help)

        def add(name: Any, value: Any, config: type | None, help: str) -> None:
            if not isinstance(name, str) or not name:
                raise RegistryError(f"plugin {plugin!r} registered a {self.what} without a name: {value!r}")
            wrong = (not isinstance(value, self.expects)) if self.expects else not callable(value)
            if wrong:
                wanted = self.expects.__qualname__ if self.expects else "a callable"
                raise RegistryError(f"plugin {plugin!r} registered {self.what} {name!r} as a {type(value).__name__}, "
                                    f"not {wanted}")
            if config is not None and not attrs.has(config):
                raise RegistryError(f"plugin {plugin!r}: config of {self.what} {name!r} must be an attrs class")
            if name in self._entries:
                first = self._entries[name].plugin
                raise RegistryError(f"{self.what} {name!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}")
            self._entries[name] = Entry(name, value, plugin, config, help or _description(value))

        return register_named if self.named else register

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.what} {name!r}; available: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)


def _description(value: Any) -> str:
    """What ``platform plugins`` shows: a component's ``description``, else the first line of a function's
    or class's docstring (never the docstring of an instance's class)."""
    text = getattr(value, "description", None) or ""
    if not text and (inspect.isroutine(value) or inspect.isclass(value)):
        text = value.__doc__ or ""
    return text.strip().splitlines()[0] if text.strip() else ""

