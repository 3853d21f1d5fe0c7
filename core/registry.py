"""Named components contributed by plugins: tasks, samplers, regularizers, topologies, spaces.

Registration hooks receive a ``register`` callback bound to the calling plugin, so a duplicate name
is reported naming both plugins, and a lookup of an unknown name lists what is available.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import attrs

from core.errors import PlatformError


class RegistryError(PlatformError):
    """A component was registered twice, or asked for under a name nobody registered."""


@attrs.frozen
class Entry:
    name: str
    value: Any
    plugin: str
    config: type | None = None
    help: str = ""


class Registry:
    """Components of one kind (``task``, ``sampler``, ...) by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register_for(self, plugin: str) -> Callable[..., None]:
        """The ``register`` callback handed to ``plugin``'s registration hook."""

        def register(name: str, value: Any = None, *, config: type | None = None, help: str = "") -> None:
            if value is None and hasattr(name, "name"):  # register(task_spec)
                name, value = name.name, name
            if not isinstance(name, str) or not name:
                raise RegistryError(f"plugin {plugin!r} registered a {self.kind} without a name")
            if config is not None and not attrs.has(config):
                raise RegistryError(f"plugin {plugin!r}: config of {self.kind} {name!r} must be an attrs class")
            if name in self._entries:
                first = self._entries[name].plugin
                raise RegistryError(f"{self.kind} {name!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}")
            self._entries[name] = Entry(name, value, plugin, config, help or getattr(value, "description", "") or _first_line(value))

        return register

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)


def _first_line(value: Any) -> str:
    doc = getattr(value, "help", None) or getattr(value, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
