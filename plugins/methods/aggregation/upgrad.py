"""UPGrad, unconflicting projection of gradients (Quinton and Rey, "Jacobian Descent for Multi-Objective
Optimization", 2024; TorchJD's ``UPGrad``): each task's gradient, scaled by 1/T, is projected onto the dual
cone of the task gradients {x : x . g_j >= 0 for every j}, and the projections are summed:

    d = sum_i pi(g_i / T),      pi(g_i / T) = J^T v_i,   v_i = argmin_{v >= e_i / T} v^T G v

(the projection's dual, a quadratic program on the Gram matrix G = J J^T). The direction conflicts with no
task (d . g_t >= 0), and equals the mean gradient when no two gradients conflict. The programs are solved
exactly by the package's active-set solver, on G normalised to trace 1 plus ``--upgrad-ridge`` times the
identity, as TorchJD's default projector (quadprog) does; unlike TorchJD, a Gram matrix of trace below 1e-4
(gradient norms below about 0.01) is normalised too, not set to zero (which made the update the mean).
The ridge lets d . g_t fall below 0 by at most ridge x w_t on that scale (w_t: task t's weight).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import BalancerFactory, Component, field, hookimpl
from plugins.methods.aggregation._gramian import GramianBalancer, normalised, solve_qp

PLATFORM_OPT_IN = True


@attrs.frozen
class UPGradConfig:
    ridge: float = field(1e-4, "added to the diagonal of the trace-normalised Gram matrix, so that dependent "
                         "gradients still have a projection (TorchJD's reg_eps)", validator=[v.gt(0.0), v.lt(1.0)])


class UPGrad(GramianBalancer):
    def __init__(self, settings: UPGradConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.ridge = settings.ridge

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        return upgrad_weights(gram, self.ridge)


def upgrad_weights(gram: torch.Tensor, ridge: float) -> torch.Tensor:
    """The sum over tasks i of the weights of the projection of g_i / T onto the dual cone."""
    size = len(gram)
    q = normalised(gram) + ridge * torch.eye(size, dtype=gram.dtype)
    bounds = torch.eye(size, dtype=gram.dtype) / size
    return sum((solve_qp(q, torch.zeros(size, dtype=gram.dtype), bound) for bound in bounds),
               torch.zeros(size, dtype=gram.dtype))


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("upgrad", UPGrad, settings=UPGradConfig,
                      help="UPGrad (Quinton & Rey 2024): the mean of each task's gradient projected onto the "
                           "cone of directions that conflict with none")]
