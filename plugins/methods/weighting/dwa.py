"""Dynamic weight average (Liu, Johns and Davison, CVPR 2019): a task whose loss fell less over the last
period weighs more. With r_t = L_t(k-1) / L_t(k-2), the ratio of its mean training loss over the last two
periods, w_t = T exp(r_t / temperature) / sum_j exp(r_j / temperature); the first two periods weigh every
task 1. The paper's period is an epoch; fine-tuning runs few epochs, so ``--dwa-period`` may count steps.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import Balancer, BalancerFactory, Component, Run, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class DWAConfig:
    temperature: float = field(2.0, "softness of the weights: large, nearly equal; small, the slowest task takes all",
                               validator=v.gt(0.0))
    period: int = field(0, "steps over which a mean loss is taken (0: an epoch, as the paper)", validator=v.ge(0))


class DWA(Balancer):
    observes_losses = True

    def __init__(self, settings: DWAConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.temperature, self.period = settings.temperature, settings.period
        self.sums, self.counts = torch.zeros(len(tasks)), torch.zeros(len(tasks))  # the current period's
        self.history: list[torch.Tensor] = []  # mean losses of the last two periods, oldest first
        self.current = torch.ones(len(tasks))

    def weights(self, tasks: list[str], step: int) -> dict[str, torch.Tensor | float]:
        return {task: self.current[self.tasks.index(task)] for task in tasks}

    def update(self, losses: dict[str, torch.Tensor], step: int) -> None:
        for task, loss in losses.items():
            i = self.tasks.index(task)
            self.sums[i] += loss.float().cpu()
            self.counts[i] += 1
        if self.period and (step + 1) % self.period == 0:
            self.end_period()

    @hookimpl
    def platform_on_epoch_end(self, run: Run, epoch: int, metrics: dict[str, float]) -> None:
        if not self.period:
            self.end_period()

    def end_period(self) -> None:
        """The period's mean losses join the history; the next period's weights follow from the last two."""
        seen = self.counts > 0
        means = torch.where(seen, self.sums / self.counts.clamp_min(1), self.history[-1] if self.history else 1.0)
        self.history = [*self.history, means][-2:]
        self.sums, self.counts = torch.zeros(len(self.tasks)), torch.zeros(len(self.tasks))
        if len(self.history) == 2:
            self.current = dwa_weights(self.history[0], self.history[1], self.temperature)

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums, "counts": self.counts, "history": list(self.history), "current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.sums, self.counts, self.current = state["sums"], state["counts"], state["current"]
            self.history = list(state["history"])


def dwa_weights(older: torch.Tensor, newer: torch.Tensor, temperature: float) -> torch.Tensor:
    """The paper's w_t = T softmax(r / temperature)_t with r_t = newer_t / older_t."""
    ratios = newer / older
    return len(ratios) * torch.softmax(ratios / temperature, dim=0)


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"temperature": trial.suggest_float("dwa_temperature", 0.5, 10.0, log=True)}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("dwa", DWA, settings=DWAConfig, space=space,
                      help="dynamic weight average (Liu et al. 2019): more weight to tasks whose loss falls slowest")]
