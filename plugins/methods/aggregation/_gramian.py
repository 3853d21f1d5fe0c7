"""What the aggregators share: the base class of a method that weighs the tasks' gradients from their Gram
matrix, and an exact solver of the small quadratic programs the methods pose on it (MGDA's min-norm point,
UPGrad's projections onto the dual cone, CAGrad's inner problem).

Every method here needs only the (T, T) Gram matrix G = J J^T of the task gradients J (T, P): its weights w
give the direction J^T w (as TorchJD's ``GramianWeightedAggregator``). T is a handful of tasks, so the
programs are solved exactly, in float64 on the CPU, by a primal active-set method (Lawson and Hanson's, for
bound constraints, with an optional sum-to-one constraint): it moves between faces of the feasible set,
solving the equality-constrained problem of each face by a Cholesky factorisation, and stops when no bound's
multiplier is negative, in at most a few times T steps. It needs Q positive definite: callers add a small
ridge to the (normalised, positive semi-definite) Gram matrix, so identical or dependent gradients still have
a solution.
"""

from __future__ import annotations

import math

import torch

from core.api import Aggregation, Balancer

TOLERANCE = 1e-12  # on multipliers of a Gram matrix normalised to trace 1
GRAM_EPSILON = torch.finfo(torch.float32).eps  # the Gram matrix's relative precision: the product runs in float32
MIN_NORM_RIDGE = 1e-10  # keeps the face problems of min_norm_weights definite when gradients are dependent


class GramianBalancer(Balancer):
    """A gradient-based balancer whose direction is a combination of the task gradients, its weights a
    function of their Gram matrix (and the losses, the step): subclasses define :meth:`weigh`. Each task's own
    head keeps its own gradient (``head_factors`` None, as LibMTL's gradient methods)."""

    gradients = True

    def aggregate(self, grads: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> Aggregation:
        gram = gramian(grads)
        if torch.isfinite(gram).all():
            weights = self.weigh(gram, losses.detach().double().cpu(), tasks, step)
        else:  # a diverging run: the mean carries the non-finite gradients on, and the loop stops it as any other
            weights = torch.full((len(tasks),), 1 / len(tasks), dtype=torch.float64)
        weights = weights.to(device=grads.device, dtype=grads.dtype)
        return Aggregation(weights @ grads, weights=weights)  # (T,) @ (T, P) -> (P,)

    def weigh(self, gram: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> torch.Tensor:
        """The (T,) weights of the step's tasks, from ``gram`` (T, T) and ``losses`` (T,), float64 on the CPU."""
        raise NotImplementedError


def gramian(grads: torch.Tensor) -> torch.Tensor:
    """The (T, T) Gram matrix of the rows of ``grads`` (T, P), in float64 on the CPU. The product runs on the
    gradients' device in their dtype (float32: a copy in float64 would double T rows of the shared
    parameters' size); reading it is the step's one wait for the device. It is symmetrised, which rounding
    may not leave it."""
    gram = (grads @ grads.T).double().cpu()
    return (gram + gram.T) / 2


def combined_norm(weights: torch.Tensor, gram: torch.Tensor) -> float:
    """||sum_t w_t g_t||, from the Gram matrix of the g_t."""
    return math.sqrt(max(float(weights @ gram @ weights), 0.0))


def normalised(gram: torch.Tensor) -> torch.Tensor:
    """``gram`` divided by its trace (the squared Frobenius norm of the gradients): the same weights for
    every method here whose weights are scale-invariant, on a scale the solver's tolerances fit. All zeros
    stays all zeros."""
    trace = gram.diagonal().sum()
    return gram / trace if trace > 0 else gram


def solve_qp(q: torch.Tensor, c: torch.Tensor, lower: torch.Tensor, simplex: bool = False) -> torch.Tensor:
    """argmin_x 1/2 x^T q x + c^T x subject to x >= ``lower`` and, with ``simplex``, sum(x) = 1 (then
    sum(lower) < 1). ``q`` (T, T) must be positive definite; every tensor float64."""
    size = len(c)
    if simplex:
        x = lower + (1 - lower.sum()) / size  # every variable free, strictly above its bound
        free = torch.ones(size, dtype=torch.bool)
    else:
        x = lower.clone()  # every variable at its bound
        free = torch.zeros(size, dtype=torch.bool)
    for _ in range(10 * size + 10):  # each step frees a variable or fixes one: far fewer suffice
        target = face_minimum(q, c, lower, free, simplex)
        stepping = free & (target < lower)
        if not stepping.any():
            x = target
            multipliers = q @ x + c
            if simplex:
                multipliers = multipliers - multipliers[free].mean()  # the sum constraint's multiplier
            multipliers = multipliers.masked_fill(free, float("inf"))
            best = int(multipliers.argmin())
            if multipliers[best] >= -TOLERANCE:
                return x
            free[best] = True
        else:  # walk toward the face's minimum until the first free variable reaches its bound
            ratio = (x - lower)[stepping] / (x - target)[stepping]
            x = x + ratio.min().clamp(0, 1) * (target - x)
            reached = free & (x <= lower + TOLERANCE)
            if simplex and reached.all():  # rounding; the sum constraint keeps one variable free
                reached[int(x.argmax())] = False
            free &= ~reached
            x = torch.where(free, x, lower)
    return x


def face_minimum(q: torch.Tensor, c: torch.Tensor, lower: torch.Tensor, free: torch.Tensor,
                 simplex: bool) -> torch.Tensor:
    """The minimum of 1/2 x^T q x + c^T x over the face where the variables not ``free`` sit at their bound
    (and, with ``simplex``, sum(x) = 1)."""
    x = lower.clone()
    if not free.any():
        return x
    fixed = ~free
    linear = c[free] + q[free][:, fixed] @ lower[fixed]
    factor = torch.linalg.cholesky(q[free][:, free])
    inside = -torch.cholesky_solve(linear[:, None], factor)[:, 0]
    if simplex:
        ones = torch.cholesky_solve(torch.ones_like(linear)[:, None], factor)[:, 0]
        inside = inside + (1 - lower[fixed].sum() - inside.sum()) / ones.sum() * ones
    x[free] = inside
    return x


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """The weights w of the point of the convex hull of the gradients nearest the origin (MGDA):
    argmin_w w^T G w over the simplex, G = ``gram`` (float64)."""
    size = len(gram)
    q = normalised(gram) + MIN_NORM_RIDGE * torch.eye(size, dtype=gram.dtype)
    zeros = torch.zeros(size, dtype=gram.dtype)
    return solve_qp(q, zeros, zeros, simplex=True)
