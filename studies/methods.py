"""A study that chooses the method: with several balancer plugins enabled (``--plugins uncertainty,famo,...``)
and no ``--balancer``, each trial draws the balancer as the categorical parameter ``balancer`` (equal
weighting among the choices, as the baseline) and then searches the chosen method's own space only; the
other methods' spaces suggest nothing in that trial. ``studies/methods.toml`` is an example space file.
"""

from __future__ import annotations

from typing import Any

from core.api import Component, SearchSpace
from studies.space import ActiveSpace

PARAMETER = "balancer"


def balancer_choices(registries: Any, balancer: str) -> list[str]:
    """The balancers a study chooses among: the default and every enabled opt-in plugin's, when there are
    several of the latter and the base configuration names none; otherwise none (no choice to make)."""
    if balancer:
        return []
    offered = [component.name for component in registries.balancers if registries.opt_in(component)]
    if len(offered) < 2:
        return []
    return [component.name for component in registries.balancers.defaults()] + offered


def method_spaces(registries: Any, choices: list[str]) -> list[ActiveSpace]:
    """The space that draws the balancer, then each method's own space, active in the trials that drew it."""
    if not choices:
        return []

    def choose(trial: Any, base: Any) -> dict[str, Any]:
        return {"balancer": trial.suggest_categorical(PARAMETER, choices)}

    spaces = [ActiveSpace(PARAMETER, "studies", choose)]
    for name in choices:
        component: Component[Any] = registries.balancers[name]
        if component.space is not None:
            spaces.append(ActiveSpace(name, component.plugin, when_chosen(name, component.space), component=name))
    return spaces


def when_chosen(name: str, space: SearchSpace) -> SearchSpace:
    """``space``, in the trials whose drawn balancer is ``name``; nothing in the others (a dry run, which lists
    the space, still asks it, and drops what it suggests)."""

    def conditional(trial: Any, base: Any) -> dict[str, Any] | None:
        if trial.values.get(PARAMETER) == name:
            return space(trial, base)
        if trial.dry:
            space(trial, base)
        return {}

    return conditional
