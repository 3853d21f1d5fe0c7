"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022): the update is the Nash
bargaining solution between the tasks, d = sum_t alpha_t g_t with

    alpha_t (G alpha)_t = 1   for every t   (G = J J^T, alpha > 0),

so every task improves (g_t . d = 1 / alpha_t > 0), and a task with a smaller gradient gets a larger weight.
The paper approximates alpha by a sequence of convex programs solved with cvxpy (20 per step, warm-started at
the previous alpha); here alpha is found exactly, without cvxpy: it is the unique minimiser of the convex
f(alpha) = 1/2 alpha^T G alpha - sum_t log alpha_t (its gradient is G alpha - 1 / alpha), reached by damped
Newton steps (f is self-concordant, so the damped step 1 / (1 + Newton decrement) stays positive and
converges), warm-started at the previous alpha, on G normalised by its Frobenius norm, as the authors' code,
plus 1e-12 times the identity (a task whose gradient is zero, or gradients with zero in their convex hull's
interior, leave f without a minimum otherwise). As the authors' code and TorchJD's ``NashMTL``, the direction
is scaled down to norm ``--nashmtl-max-norm`` when longer (0: never), and ``--nashmtl-update-every k``
solves for alpha every k steps only, reusing it between. State: each task's last alpha (``last.pt``).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import BalancerFactory, Component, field, hookimpl
from plugins.methods.aggregation._gramian import GramianBalancer, combined_norm

PLATFORM_OPT_IN = True
RIDGE = 1e-12
NEWTON_STEPS = 200  # tens at most where a solution exists (more only where the ridge makes it)


@attrs.frozen
class NashMTLConfig:
    max_norm: float = field(1.0, "the longest update direction; longer ones are scaled down to it (0: never)",
                            validator=v.ge(0.0))
    update_every: int = field(1, "solve for the weights every this many steps, reusing them between",
                              validator=v.ge(1))


class NashMTL(GramianBalancer):
    def __init__(self, settings: NashMTLConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.max_norm, self.update_every = settings.max_norm, settings.update_every
        self.alpha = torch.full((len(tasks),), float("nan"), dtype=torch.float64)  # each task's last alpha

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        index = torch.tensor([self.tasks.index(task) for task in tasks])
        if step % self.update_every == 0:
            self.alpha[index] = bargaining_weights(gram, start=self.alpha[index])
        alpha = self.alpha[index]
        norm = combined_norm(alpha, gram)
        if 0 < self.max_norm < norm:
            alpha = alpha * (self.max_norm / norm)
        return alpha

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.alpha = state["alpha"].clone()


def bargaining_weights(gram: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """alpha > 0 with alpha_t (G alpha)_t = 1, G = ``gram``: damped Newton on f(alpha) = 1/2 alpha^T G alpha -
    sum log alpha, on G normalised by its Frobenius norm, from ``start`` (the previous alpha; where NaN, 1 / ||g_t||,
    the solution were the gradients orthogonal)."""
    scale = float(torch.linalg.matrix_norm(gram))
    if scale == 0:
        return torch.ones_like(start)  # every gradient zero: no update whatever alpha
    normal = gram / scale + RIDGE * torch.eye(len(gram), dtype=gram.dtype)
    alpha = torch.where(start.isnan(), normal.diagonal().rsqrt(), start * scale ** 0.5)  # on the normalised scale
    for _ in range(NEWTON_STEPS):
        gradient = normal @ alpha - 1 / alpha
        hessian = normal + torch.diag(alpha ** -2)
        step = torch.linalg.solve(hessian, gradient)
        decrement = float(gradient @ step) ** 0.5  # Newton decrement
        alpha = alpha - step / (1 + decrement) if decrement > 0.25 else alpha - step
        if decrement < 1e-10:
            break
    return alpha / scale ** 0.5


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"max_norm": trial.suggest_float("nashmtl_max_norm", 0.1, 10.0, log=True)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("nashmtl", NashMTL, settings=NashMTLConfig, space=space,
                      help="Nash-MTL (Navon et al. 2022): the tasks' Nash bargaining solution, every task improved")]
