"""MGDA, the multiple-gradient descent algorithm (Désidéri 2012), as Sener and Koltun (NeurIPS 2018) apply it
to multitask learning: the update is the point of the convex hull of the task gradients nearest the origin,

    w* = argmin_{w in simplex} || sum_t w_t g_t ||^2,      d = sum_t w_t g_t,

which descends every task at once (d . g_t >= ||d||^2 for every t), or is zero at a Pareto-stationary point.
Here g_t is task t's gradient of every shared parameter, as TorchJD's ``MGDA`` and LibMTL's MGDA without
``rep_grad``. It is not Sener and Koltun's MGDA-UB: that solves the same problem on the gradients of the
shared representation (the encoder's output), an upper bound that costs one backward pass instead of T; this
platform keeps the T gradients of the shared parameters and solves it exactly on them. The min-norm point is
found exactly (the package's active-set solver on the Gram matrix) where Sener and Koltun run Frank-Wolfe.

``--mgda-normalization`` scales each gradient before the min-norm point is sought, as their code offers:
``l2`` by its norm, ``loss`` by the task's loss, ``loss+`` by both; the direction combines the scaled
gradients. The weights sum to 1 (with ``none``): the update is about the mean gradient's scale.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import BalancerFactory, Component, field, hookimpl
from plugins.methods.aggregation._gramian import GramianBalancer, min_norm_weights

PLATFORM_OPT_IN = True
NORMALIZATIONS = ("none", "l2", "loss", "loss+")
FLOOR = 1e-12  # a zero norm or loss is not divided by


@attrs.frozen
class MGDAConfig:
    normalization: str = field("none", "each task gradient's scale before the min-norm point: none, l2 (its norm), "
                               "loss (its loss), loss+ (both)", validator=v.in_(NORMALIZATIONS),
                               metadata={"choices": NORMALIZATIONS})


class MGDA(GramianBalancer):
    def __init__(self, settings: MGDAConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.normalization = settings.normalization

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        scales = gradient_scales(gram, losses, self.normalization)
        return min_norm_weights(gram / scales[:, None] / scales[None, :]) / scales


def gradient_scales(gram: torch.Tensor, losses: torch.Tensor, normalization: str) -> torch.Tensor:
    """What each task's gradient is divided by before the min-norm point is sought."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    scales = {"none": torch.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    return scales.clamp_min(FLOOR)


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"normalization": trial.suggest_categorical("mgda_normalization", list(NORMALIZATIONS))}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("mgda", MGDA, settings=MGDAConfig, space=space,
                      help="MGDA (Sener & Koltun 2018, on the shared parameters' gradients): the min-norm point "
                           "of their convex hull")]
