"""PCGrad, gradient surgery (Yu et al., NeurIPS 2020): each task's gradient, where it conflicts with another
task's (g_i . g_j < 0), loses its component along that task's gradient, the others taken in random order:

    g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2 g_j      for each j != i in a random order, if negative

(always against the original g_j), and the update is the sum of the projected gradients. Each projected
gradient stays a combination of the original rows, so the method is a weighting of the Gram matrix, as
TorchJD's ``PCGrad``. The order is drawn from :func:`step_generator`: every process draws alike and a resumed
run draws what it drew. No settings.
"""

from __future__ import annotations

import torch

from core.api import BalancerFactory, Component, hookimpl, step_generator
from plugins.methods.aggregation._gramian import GramianBalancer

PLATFORM_OPT_IN = True


class PCGrad(GramianBalancer):
    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        generator = step_generator(self.seed, step)
        orders = [torch.randperm(len(tasks), generator=generator) for _ in tasks]
        return pcgrad_weights(gram, orders)


def pcgrad_weights(gram: torch.Tensor, orders: list[torch.Tensor]) -> torch.Tensor:
    """The weights of the sum of the projected gradients: row i of ``weights`` is g_i^PC in the basis of the
    original gradients, projected against the others in ``orders[i]``."""
    size = len(gram)
    weights = torch.zeros(size, dtype=gram.dtype)
    for i, order in enumerate(orders):
        projected = torch.zeros(size, dtype=gram.dtype)
        projected[i] = 1.0
        for j in order.tolist():
            inner = gram[j] @ projected  # g_j . g_i^PC
            if j != i and inner < 0:
                projected[j] -= inner / gram[j, j]
        weights += projected
    return weights


def pcgrad(settings: None, tasks: list[str], seed: int) -> PCGrad:
    return PCGrad(tasks, seed)


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("pcgrad", pcgrad, help="PCGrad (Yu et al. 2020): each task's gradient loses its component "
                                             "along the gradients it conflicts with")]
