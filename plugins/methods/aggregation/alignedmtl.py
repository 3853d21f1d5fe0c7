"""Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023):
the task gradients are replaced by aligned ones, orthogonal and of equal norm, the linear system of the
gradients made perfectly conditioned, and the update combines those:

    G = J J^T = V diag(lambda) V^T,   B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T,   d = J^T B w

(eigenvalues below T x float32's epsilon of the largest dropped: the rank of J). The aligned gradients
J^T B have Gram matrix lambda_min I, and with w = 1/T the update projects equally on each of them (d .
J^T B e_t = lambda_min / T). As TorchJD's ``AlignedMTL``: its weights B w; ``--alignedmtl-scale`` chooses
the eigenvalue that sets the aligned gradients' norm: ``min`` (the paper's Algorithm 1), ``median``, or
``rmse`` (the mean eigenvalue, as the authors' code). Unlike MGDA or UPGrad, the direction may conflict with
an original gradient.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import BalancerFactory, Component, field, hookimpl
from plugins.methods.aggregation._gramian import GRAM_EPSILON, GramianBalancer, normalised

PLATFORM_OPT_IN = True
SCALES = ("min", "median", "rmse")


@attrs.frozen
class AlignedMTLConfig:
    scale: str = field("min", "the eigenvalue that sets the aligned gradients' norm: min (the paper), median, rmse "
                       "(the mean, the authors' code)", validator=v.in_(SCALES), metadata={"choices": SCALES})


class AlignedMTL(GramianBalancer):
    def __init__(self, settings: AlignedMTLConfig, tasks: list[str], seed: int):
        super().__init__(tasks, seed)
        self.scale = settings.scale

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        preference = torch.full((len(gram),), 1 / len(gram), dtype=gram.dtype)
        return balance_transformation(gram, self.scale) @ preference


def balance_transformation(gram: torch.Tensor, scale: str) -> torch.Tensor:
    """B = sqrt(lambda_scale) V diag(lambda)^(-1/2) V^T on the rank of ``gram``; the identity when it is zero."""
    gram = normalised(gram)
    eigenvalues, vectors = torch.linalg.eigh(gram)
    kept = eigenvalues > eigenvalues.max() * len(gram) * GRAM_EPSILON
    if not kept.any():
        return torch.eye(len(gram), dtype=gram.dtype)
    eigenvalues, vectors = eigenvalues[kept], vectors[:, kept]
    chosen = {"min": eigenvalues.min(), "median": eigenvalues.median(), "rmse": eigenvalues.mean()}[scale]
    return chosen.sqrt() * vectors @ torch.diag(eigenvalues.rsqrt()) @ vectors.T


def space(trial: Any, base: Any) -> dict[str, Any]:
    return {"scale": trial.suggest_categorical("alignedmtl_scale", list(SCALES))}


@hookimpl
def platform_balancers() -> list[Component[BalancerFactory]]:
    return [Component("alignedmtl", AlignedMTL, settings=AlignedMTLConfig, space=space,
                      help="Aligned-MTL (Senushkin et al. 2023): the update of aligned task gradients, orthogonal "
                           "and of equal norm")]
