"""The default balancer: equal weighting, the plain summed update (every task's loss weighs 1, times its
``--loss-weights`` factor, which is how static weights are given)."""

from __future__ import annotations

from core.api import Balancer, BalancerFactory, Component, hookimpl


def equal(settings: None, tasks: list[str], seed: int) -> Balancer:
    return Balancer(tasks, seed)


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("equal", equal, default=True,
                      help="the summed update: every task's loss weighs 1 (static weights: --loss-weights)")]
