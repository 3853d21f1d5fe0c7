"""IMTL-G, the gradient half of impartial multitask learning (Liu et al., ICLR 2021): the update is the
combination of the task gradients whose projections on every task's unit gradient u_t = g_t / ||g_t|| are
equal, its weights summing to 1:

    d = sum_t a_t g_t,   d . u_t = d . u_1 for every t,   sum_t a_t = 1.

With the Gram matrix G = J J^T and n = (||g_t||)_t: G a = k n, so a = G^+ n / sum(G^+ n), the paper's closed
form when G is invertible and TorchJD's ``IMTLG`` (its pseudo-inverse generalisation) otherwise. The
projections are then all 1 / sum(G^+ n) >= 0: the direction conflicts with no task. The pseudo-inverse cuts
singular values below T x float32's epsilon of the largest, the precision the Gram matrix is computed in.
The paper's loss half (IMTL-L, learned loss scales) is not part of it. No settings.
"""

from __future__ import annotations

import torch

from core.api import BalancerFactory, Component, hookimpl
from plugins.methods.aggregation._gramian import GRAM_EPSILON, GramianBalancer, normalised

PLATFORM_OPT_IN = True


class IMTLG(GramianBalancer):
    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        return imtl_weights(gram)


def imtl_weights(gram: torch.Tensor) -> torch.Tensor:
    gram = normalised(gram)
    norms = gram.diagonal().clamp_min(0).sqrt()
    solution = torch.linalg.pinv(gram, rtol=len(gram) * GRAM_EPSILON, hermitian=True) @ norms  # (T,)
    total = solution.sum()
    return solution / total if total > 1e-12 else torch.zeros_like(solution)  # all gradients zero: no update


def imtl(settings: None, tasks: list[str], seed: int) -> IMTLG:
    return IMTLG(tasks, seed)


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("imtl", imtl, help="IMTL-G (Liu et al. 2021): the combination of the task gradients with "
                                         "equal projections on every task's direction")]
