"""CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021): the update maximises the worst task's
improvement within a ball around the mean gradient g0,

    max_d min_t g_t . d   subject to   ||d - g0|| <= c ||g0||,

solved through its dual on the simplex, with g_w = sum_t w_t g_t:

    w* = argmin_w g_w . g0 + c ||g0|| ||g_w||,      d = g0 + c ||g0|| / ||g_w*|| g_w*.

c = 0 gives the mean gradient; a larger c moves toward MGDA's min-norm direction (c < 1 keeps the paper's
convergence guarantee). Then min_t g_t . d >= min_t g_t . g0: the worst task fares no worse than under the
mean gradient. The dual's optimum solves the quadratic program argmin_w s/2 ||g_w||^2 + g_w . g0 (simplex)
for the s at which s ||g_w(s)|| = c ||g0||: the package's exact solver on the Gram matrix, with a safeguarded
secant search for s (TorchJD's ``CAGrad`` solves the dual with cvxpy, the authors' code with scipy's SLSQP).
The direction is the paper's; the authors' code divides it by 1 + c^2 by default (a learning-rate scale).
Where ||g_w*|| vanishes (below 1e-4 of the gradients' Frobenius norm, TorchJD's threshold), the direction is
g0 (TorchJD gives zero).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import BalancerFactory, Component, field, hookimpl
from plugins.methods.aggregation._gramian import (MIN_NORM_RIDGE, GramianBalancer, combined_norm, min_norm_weights,
                                                  normalised, solve_qp)

PLATFORM_OPT_IN = True
VANISHING = 1e-4  # ||g_w*|| below this (the Gram matrix normalised to trace 1): the dual's formula breaks down
SEARCH_STEPS = 100  # of the secant search on log s; it converges in far fewer


@attrs.frozen
class CAGradConfig:
    c: float = field(0.5, "radius of the ball around the mean gradient, in units of its norm (0: the mean "
                     "gradient; below 1 for the paper's guarantee)", validator=v.ge(0.0))


class CAGrad(GramianBalancer):
    def __init__(self, settings: CAGradConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.c = settings.c

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        return cagrad_weights(gram, self.c)


def cagrad_weights(gram: torch.Tensor, c: float) -> torch.Tensor:
    """The weights of d = g0 + c ||g0|| / ||g_w*|| g_w*, g0 the mean gradient."""
    gram = normalised(gram)
    size = len(gram)
    mean = torch.full((size,), 1 / size, dtype=gram.dtype)
    radius = c * combined_norm(mean, gram)  # c ||g0||
    if radius == 0:
        return mean
    dual = dual_weights(gram, gram @ mean, radius)
    norm = combined_norm(dual, gram) if dual is not None else 0.0
    if dual is None or norm < VANISHING:
        return mean
    return mean + radius / norm * dual


def dual_weights(gram: torch.Tensor, inner: torch.Tensor, radius: float) -> torch.Tensor | None:
    """argmin_w w . inner + radius ||g_w|| on the simplex (``inner``: g_t . g0): the solution w(s) of the
    quadratic program min s/2 w^T G w + w . inner at the root of psi(s) = s ||g_w(s)|| - radius. psi < 0 at
    s = radius / max_t ||g_t|| and > 0 at 2 radius / ||g_w|| min (||g_w(s)|| lies between those norms), so
    an Illinois secant search on log s keeps a bracket of the root. None: the min-norm point is zero."""
    ridge = MIN_NORM_RIDGE * torch.eye(len(gram), dtype=gram.dtype)
    zeros = torch.zeros(len(gram), dtype=gram.dtype)

    def solution(log_s: float) -> tuple[torch.Tensor, float]:
        s = math.exp(log_s)
        w = solve_qp(s * (gram + ridge), inner, zeros, simplex=True)
        return w, s * combined_norm(w, gram) - radius

    least = combined_norm(min_norm_weights(gram), gram)
    if least < 1e-15:
        return None
    low, high = math.log(radius / math.sqrt(float(gram.diagonal().max()))), math.log(2 * radius / least)
    (w, psi_low), (_, psi_high) = solution(low), solution(high)
    if psi_low >= 0:
        return w
    side = 0
    for _ in range(SEARCH_STEPS):
        middle = (low * psi_high - high * psi_low) / (psi_high - psi_low)
        w, psi = solution(middle)
        if abs(psi) <= 1e-12 * radius or high - low <= 1e-12:
            break
        if psi < 0:
            low, psi_low = middle, psi
            psi_high = psi_high / 2 if side == -1 else psi_high  # Illinois: the stale end's value halved
            side = -1
        else:
            high, psi_high = middle, psi
            psi_low = psi_low / 2 if side == 1 else psi_low
            side = 1
    return w


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"c": trial.suggest_float("cagrad_c", 0.0, 1.0)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("cagrad", CAGrad, settings=CAGradConfig, space=space,
                      help="CAGrad (Liu et al. 2021): the best update for the worst task within a ball around the "
                           "mean gradient")]
