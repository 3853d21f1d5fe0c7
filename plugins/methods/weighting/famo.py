"""FAMO, fast adaptive multitask optimisation (Liu et al., NeurIPS 2023): decrease every task's loss at
about the same rate, in O(1) space and time per task. Task logits xi give z = softmax(xi); the update is the
gradient of sum_t z_t log(L_t - m_t) / c with c = sum_t z_t / (L_t - m_t) (m_t: a lower bound on the loss,
0), i.e. task t's gradient weighs z_t / (c (L_t - m_t)). After a step, xi moves along the gradient through
z of the observed decrease of the log losses, delta_t = log L_t(before) - log L_t(after), by an Adam with
weight decay gamma.

The paper measures L(after) with a second forward of the same batch; here, as LibMTL-style
implementations do, with the next step's losses (no extra forward; the batches differ). Each task's own head
trains on its weight times its gradient, as the weighted objective gives.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import Aggregation, Balancer, BalancerFactory, Component, field, hookimpl

PLATFORM_OPT_IN = True
FLOOR = 1e-8  # keeps log(L - m) finite for a loss at its bound


@attrs.frozen
class FAMOConfig:
    lr: float = field(0.025, "learning rate of the task logits (their own Adam)", validator=[v.gt(0.0), v.le(1.0)])
    gamma: float = field(1e-3, "weight decay of the task logits (pulls the weights back toward equal)",
                         validator=v.ge(0.0))


class FAMO(Balancer):
    gradients = True

    def __init__(self, settings: FAMOConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.logits = torch.zeros(len(tasks), requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=settings.lr, weight_decay=settings.gamma)
        self.previous = torch.full((len(tasks),), float("nan"))  # each task's loss at its last step

    def aggregate(self, grads: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> Aggregation:
        index = torch.tensor([self.tasks.index(task) for task in tasks])
        losses = losses.detach().float().cpu()
        if not torch.isnan(self.previous[index]).any():
            self.learn(index, losses)
        self.previous[index] = losses
        weights = famo_weights(torch.softmax(self.logits.detach()[index], dim=0), losses).to(grads.device)
        return Aggregation(weights @ grads, weights=weights, head_factors=weights)

    def learn(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """One step of the logits on the decrease of the log losses since each task's last step."""
        delta = torch.log(self.previous[index].clamp_min(FLOOR)) - torch.log(losses.clamp_min(FLOOR))
        with torch.enable_grad():
            z = torch.softmax(self.logits[index], dim=0)
            (grad,) = torch.autograd.grad(z, self.logits, grad_outputs=delta)
        self.logits.grad = grad
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().clone(), "previous": self.previous.clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            with torch.no_grad():
                self.logits.copy_(state["logits"])
            self.previous = state["previous"].clone()
            self.optimizer.load_state_dict(state["optimizer"])


def famo_weights(z: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Each task's factor on its gradient: z_t / (c L_t), c = sum_j z_j / L_j (lower bounds m at 0)."""
    inverse = 1.0 / losses.clamp_min(FLOOR)
    return z * inverse / (z * inverse).sum()


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"lr": trial.suggest_float("famo_lr", 1e-3, 1e-1, log=True),
            "gamma": trial.suggest_float("famo_gamma", 1e-5, 1e-2, log=True)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("famo", FAMO, settings=FAMOConfig, space=space,
                      help="FAMO (Liu et al. 2023): learned weights that decrease every task's loss at one rate")]
