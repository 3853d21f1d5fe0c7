"""Random loss weighting (Lin et al., TMLR 2022): every step draws the task weights at random, w =
softmax(z) with z ~ N(0, I), a random point of the simplex. The paper finds it as good as many tuned
methods: a baseline every method should beat. The draw is a pure function of (seed, step): every process
draws the same weights and a resumed run draws what it drew. The weights sum to 1, not to T: the update is
1/T of the summed one in scale, which Adam mostly undoes.
"""

from __future__ import annotations

import torch

from core.api import Balancer, BalancerFactory, Component, hookimpl, step_generator

PLATFORM_OPT_IN = True


class RLW(Balancer):
    def weights(self, tasks: list[str], step: int) -> dict[str, torch.Tensor | float]:
        draws = torch.randn(len(self.tasks), generator=step_generator(self.seed, step))  # one per task of the run
        present = torch.tensor([self.tasks.index(task) for task in tasks])
        weights = torch.softmax(draws[present], dim=0)
        return dict(zip(tasks, weights))


def rlw(settings: None, tasks: list[str], seed: int) -> RLW:
    return RLW(tasks, seed)


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("rlw", rlw, help="random loss weighting (Lin et al. 2022): weights drawn every step, "
                                       "softmax of a normal draw")]
