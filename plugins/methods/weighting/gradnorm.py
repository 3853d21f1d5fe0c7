"""GradNorm (Chen et al., ICML 2018): learned task weights that keep the tasks' gradient norms in step with
how fast each task trains. With g_t the gradient of L_t in the shared parameters, G_t = w_t ||g_t||, their
mean G, and r_t = (L_t / L_t(0)) / mean_j (L_j / L_j(0)) the relative inverse training rate, the weights
descend L_grad = sum_t |G_t - G r_t^alpha| with the target G r_t^alpha held constant:
d L_grad / d w_t = sign(G_t - G r_t^alpha) ||g_t||, then are renormalised to sum to T.

The update is sum_t w_t g_t on the shared parameters, and each task's own head trains on w_t times its
gradient, as the weighted sum of losses gives. The paper takes the norms on the last shared layer; here on
every shared parameter (LibMTL's choice), which the aggregated step has in hand. The weights learn with their
own Adam (``--gradnorm-lr``). L_t(0) is each task's loss at its first step.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import Aggregation, Balancer, BalancerFactory, Component, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class GradNormConfig:
    alpha: float = field(1.5, "strength of the pull toward equal training rates (0: equal gradient norms)",
                         validator=v.ge(0.0))
    lr: float = field(0.025, "learning rate of the task weights (their own Adam)", validator=[v.gt(0.0), v.le(1.0)])


class GradNorm(Balancer):
    gradients = True

    def __init__(self, settings: GradNormConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.alpha = settings.alpha
        self.task_weights = torch.ones(len(tasks), requires_grad=True)
        self.optimizer = torch.optim.Adam([self.task_weights], lr=settings.lr)
        self.initial_losses = torch.full((len(tasks),), float("nan"))  # L_t(0), once a task has had a step

    def aggregate(self, grads: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> Aggregation:
        index = torch.tensor([self.tasks.index(task) for task in tasks])
        losses = losses.detach().float().cpu()
        fresh = torch.isnan(self.initial_losses[index])
        self.initial_losses[index[fresh]] = losses[fresh]
        weights = self.task_weights.detach()[index]
        norms = grads.norm(dim=1).cpu()
        self.descend(index, weights, norms, losses / self.initial_losses[index])
        weights = weights.to(grads.device)
        return Aggregation(weights @ grads, weights=weights, head_factors=weights)

    def descend(self, index: torch.Tensor, weights: torch.Tensor, norms: torch.Tensor, ratios: torch.Tensor) -> None:
        """One step of the weights on L_grad, then renormalised to sum to the number of tasks."""
        scaled = weights * norms  # G_t
        target = scaled.mean() * (ratios / ratios.mean()) ** self.alpha
        grad = torch.zeros_like(self.task_weights)
        grad[index] = torch.sign(scaled - target) * norms
        self.task_weights.grad = grad
        self.optimizer.step()
        with torch.no_grad():
            self.task_weights.clamp_(min=1e-4)
            self.task_weights.mul_(len(self.tasks) / self.task_weights.sum())

    def state_dict(self) -> dict[str, Any]:
        return {"task_weights": self.task_weights.detach().clone(), "initial_losses": self.initial_losses.clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            with torch.no_grad():
                self.task_weights.copy_(state["task_weights"])
            self.initial_losses = state["initial_losses"].clone()
            self.optimizer.load_state_dict(state["optimizer"])


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"alpha": trial.suggest_float("gradnorm_alpha", 0.0, 3.0)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("gradnorm", GradNorm, settings=GradNormConfig, space=space,
                      help="GradNorm (Chen et al. 2018): learned weights balance gradient norms by training rate")]
