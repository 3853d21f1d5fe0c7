"""Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018): each task t has a learned log-variance s_t,
and the objective is sum_t exp(-s_t) L_t + s_t. A task's weight exp(-s_t) falls as its loss stays high (its
"noise"), and the + s_t term keeps the weights from vanishing; at the optimum exp(-s_t) = 1 / L_t.

The log-variances learn with their own Adam (``--uncertainty-lr``): at fine-tuning learning rates (2e-5)
they would not move. The gradient of the objective in s_t is 1 - exp(-s_t) L_t, computed from the step's
losses, so no second backward is needed. The form is LibMTL's (one form for every kind of task), not the
paper's 1/(2 sigma^2) for regression.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import Balancer, BalancerFactory, Component, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class UncertaintyConfig:
    lr: float = field(1e-2, "learning rate of the log-variances (their own Adam)", validator=[v.gt(0.0), v.le(1.0)])


class Uncertainty(Balancer):
    observes_losses = True

    def __init__(self, settings: UncertaintyConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.log_variances = torch.zeros(len(tasks), requires_grad=True)  # s_t; exp(-s_t) = 1 at the start
        self.optimizer = torch.optim.Adam([self.log_variances], lr=settings.lr)

    def weights(self, tasks: list[str], step: int) -> dict[str, torch.Tensor | float]:
        return {task: torch.exp(-self.log_variances[self.tasks.index(task)]).detach() for task in tasks}

    def update(self, losses: dict[str, torch.Tensor], step: int) -> None:
        grad = torch.zeros_like(self.log_variances)
        for task, loss in losses.items():
            i = self.tasks.index(task)
            grad[i] = 1.0 - torch.exp(-self.log_variances[i].detach()) * loss.float().cpu()
        self.log_variances.grad = grad
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"log_variances": self.log_variances.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            with torch.no_grad():
                self.log_variances.copy_(state["log_variances"])
            self.optimizer.load_state_dict(state["optimizer"])


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"lr": trial.suggest_float("uncertainty_lr", 1e-3, 1e-1, log=True)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("uncertainty", Uncertainty, settings=UncertaintyConfig, space=space,
                      help="uncertainty weighting (Kendall et al. 2018): learned log-variances, weight exp(-s)")]
