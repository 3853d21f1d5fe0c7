"""A registry: the components of one family by name, checked once, where they are registered.

The host registers what a plugin's registration hook returned, so names and types are checked in one
place: a component without a name, of the wrong type, or registered twice (the message names both
plugins) is refused; a lookup of an unknown name lists what is available.
"""

from __future__ import annotations

import inspect
from typing import Any, Generic, Iterator, TypeVar

import attrs

from core.base.errors import PlatformError
from core.plugin.component import Component

T = TypeVar("T")


class RegistryError(PlatformError):
    """A component was registered twice or wrongly, or asked for under a name nobody registered."""


@attrs.frozen
class Family(Generic[T]):
    """A family of components: the hook that provides them and what each must be."""

    hook: str  # the registration hook, e.g. "platform_samplers"
    what: str  # one component, as messages name it: "sampler"
    expects: type | None = None  # the factory's type; None: a callable
    one_default: bool = False  # a configuration names one of them, or takes the default
    opt_in_only: bool = False  # only an opt-in plugin may provide one (it acts when enabled)


class Registry(Generic[T]):
    """The components of one family, by name, in the order they were registered."""

    def __init__(self, family: Family[T]):
        self.family = family
        self._components: dict[str, Component[T]] = {}
        self.conflicts: dict[str, list[str]] = {}  # a name two plugins registered: usable by neither

    @property
    def what(self) -> str:
        return self.family.what

    def add(self, component: Any, plugin: str) -> None:
        """Register ``component`` as provided by ``plugin``, or refuse it naming the plugin."""
        what = self.family.what
        if not isinstance(component, Component):
            raise RegistryError(f"plugin {plugin!r}: its {self.family.hook} returned {component!r}, not a Component "
                                f"(core.api.Component(name, factory, ...))")
        name, factory = component.name, component.factory
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin {plugin!r} registered a {what} without a name: {factory!r}")
        expects = self.family.expects
        if (not isinstance(factory, expects)) if expects else not callable(factory):
            wanted = expects.__qualname__ if expects else "a callable"
            raise RegistryError(f"plugin {plugin!r} registered {what} {name!r} as a {type(factory).__name__}, "
                                f"not {wanted}")
        own = getattr(factory, "name", None) if expects else None
        if own and own != name:
            raise RegistryError(f"plugin {plugin!r} registered {what} {own!r} under the name {name!r}; "
                                f"use Component.of({what.replace(' ', '_')})")
        if component.settings is not None and not attrs.has(component.settings):
            raise RegistryError(f"plugin {plugin!r}: the settings of {what} {name!r} must be an attrs class")
        if component.space is not None and not callable(component.space):
            raise RegistryError(f"plugin {plugin!r}: the space of {what} {name!r} must be a callable")
        if name in self._components or name in self.conflicts:
            self.conflicts.setdefault(name, [self._components.pop(name).plugin] if name in self._components else [])
            self.conflicts[name].append(plugin)
            return
        self._components[name] = attrs.evolve(component, plugin=plugin, help=component.help or _description(factory))

    def __getitem__(self, name: str) -> Component[T]:
        if name in self.conflicts:
            plugins = " and by ".join(f"plugin {plugin!r}" for plugin in self.conflicts[name])
            raise RegistryError(f"{self.family.what} {name!r} is registered twice: by {plugins}; uninstall or "
                                "disable one of them")
        try:
            return self._components[name]
        except KeyError:
            known = ", ".join(sorted(self._components)) or "none"
            raise RegistryError(f"unknown {self.family.what} {name!r}; available: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._components or name in self.conflicts

    def __iter__(self) -> Iterator[Component[T]]:
        return iter(self._components.values())

    def __len__(self) -> int:
        return len(self._components)

    def names(self) -> list[str]:
        return list(self._components)

    def factories(self) -> dict[str, T]:
        """Every component's factory by name (a task kind, a metric function, ...)."""
        return {name: component.factory for name, component in self._components.items()}

    def defaults(self) -> list[Component[T]]:
        """The components marked ``default``, in registration order."""
        return [component for component in self if component.default]


def _description(value: Any) -> str:
    """What ``platform plugins`` shows when a component gives no help: its factory's ``description``,
    else the first line of a function's or class's docstring (never the docstring of an instance's class)."""
    text = getattr(value, "description", None) or ""
    if not text and (inspect.isroutine(value) or inspect.isclass(value)):
        text = value.__doc__ or ""
    return text.strip().splitlines()[0] if text.strip() else ""
