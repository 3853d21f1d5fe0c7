"""The gradient aggregators (plugins/methods/aggregation): each against TorchJD's on fixed gradient matrices
(conflicting and aligned, 2 and 3 tasks, unequal scales, near-degenerate, more tasks than dimensions), the
shared solver against the conditions that define its solutions, each method's documented behaviour on a
two-task toy problem whose gradients conflict, and every method in a real tiny run: it trains with its weights
and the gradients' cosines logged, and a run stopped after its first epoch resumes to exactly the run never
stopped, the method's state included."""

import math
import warnings
from pathlib import Path

import attrs
import pytest
import torch
import torchjd.aggregation as torchjd

from core.base.files import load
from core.build.run import prepare
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.train.loop import train
from plugins.methods.aggregation._gramian import (GRAM_EPSILON, combined_norm, gramian, min_norm_weights, normalised,
                                                  solve_qp)
from plugins.methods.aggregation.alignedmtl import AlignedMTL, AlignedMTLConfig, balance_transformation
from plugins.methods.aggregation.cagrad import CAGrad, CAGradConfig, cagrad_weights
from plugins.methods.aggregation.imtl import IMTLG
from plugins.methods.aggregation.mgda import MGDA, MGDAConfig
from plugins.methods.aggregation.nashmtl import NashMTL, NashMTLConfig
from plugins.methods.aggregation.pcgrad import PCGrad, pcgrad_weights
from plugins.methods.aggregation.upgrad import UPGrad, UPGradConfig

MATRICES = {
    "conflicting-2": [[1.0, 0.2, 0.0], [-0.8, 1.0, 0.3]],
    "aligned-2": [[1.0, 0.5, 0.1], [0.9, 0.6, 0.0]],
    "conflicting-3": [[2.0, 0.0, 1.0, 0.0], [-1.0, 1.0, 0.0, 0.5], [0.0, -1.0, -0.5, 1.0]],
    "aligned-3": [[1.0, 0.2, 0.0, 0.1], [0.8, 0.0, 0.3, 0.0], [0.9, 0.1, 0.1, 0.4]],
    "unequal-3": [[10.0, 0.0, 1.0], [-0.5, 1.0, 0.0], [0.2, -0.3, 0.1]],  # norms 10, 1.1, 0.4
    "near-degenerate-3": [[1.0, 0.0, 0.0], [1.0, 1e-3, 0.0], [-0.5, 0.5, 1.0]],  # two rows 1e-3 apart
    "more-tasks-than-dimensions": [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]],  # rank 2
}
TASKS = ["sst", "sts", "quora"]


def matrix(name: str) -> torch.Tensor:
    return torch.tensor(MATRICES[name])


def aggregate(balancer, grads: torch.Tensor, losses: torch.Tensor | None = None):
    tasks = TASKS[:len(grads)]
    return balancer.aggregate(grads, torch.ones(len(grads)) if losses is None else losses, tasks, 0)


def relative_error(mine: torch.Tensor, reference: torch.Tensor) -> float:
    return float((mine.double() - reference.double()).norm() / reference.double().norm())


# --------------------------------------------------------------------------------------------------
# The solver
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("simplex", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_the_solver_meets_the_optimality_conditions_of_its_program(seed, simplex):
    """KKT: x feasible; the gradient q x + c, less the sum constraint's multiplier, is >= 0 on every bound
    and 0 off it. Random definite programs of 2 to 6 variables, with random bounds."""
    generator = torch.Generator().manual_seed(seed)
    size = 2 + seed % 5
    factor = torch.randn(size, size + 1, generator=generator, dtype=torch.float64)
    q = factor @ factor.T + 1e-3 * torch.eye(size, dtype=torch.float64)
    c = torch.randn(size, generator=generator, dtype=torch.float64)
    lower = (torch.zeros(size, dtype=torch.float64) if simplex
             else torch.randn(size, generator=generator, dtype=torch.float64))
    x = solve_qp(q, c, lower, simplex=simplex)
    gradient = q @ x + c
    assert bool((x >= lower - 1e-12).all())
    at_bound = x <= lower + 1e-9
    if simplex:
        assert float(x.sum()) == pytest.approx(1.0, abs=1e-12)
        gradient = gradient - gradient[~at_bound].mean()
    assert bool((gradient[~at_bound].abs() < 1e-9).all())  # zero off the bounds
    assert bool((gradient[at_bound] > -1e-9).all())  # no bound's multiplier negative


def test_dependent_gradients_still_have_their_min_norm_point():
    """Identical rows make the Gram matrix singular; the ridge keeps every face's problem definite. Two
    identical gradients: the point is the gradient; two pairs of them, (1, 2) and (2, -1), orthogonal and as
    long: the midpoint (1.5, 0.5), however the weight splits between duplicates."""
    grads = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    torch.testing.assert_close(min_norm_weights(gramian(grads)).float() @ grads, torch.tensor([1.0, 2.0]))
    grads = torch.tensor([[1.0, 2.0], [1.0, 2.0], [2.0, -1.0], [2.0, -1.0]])
    weights = min_norm_weights(gramian(grads))
    assert bool((weights >= 0).all()) and float(weights.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(weights.float() @ grads, torch.tensor([1.5, 0.5]))


# --------------------------------------------------------------------------------------------------
# Against TorchJD on fixed matrices
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MATRICES)
def test_pcgrad_matches_torchjd_given_the_same_orders(name):
    """TorchJD draws each task's order with torch.randperm from the global generator; the same draws given
    to ours. Both project with the same arithmetic: equal to rounding."""
    grads = matrix(name)
    torch.manual_seed(7)
    orders = [torch.randperm(len(grads)) for _ in grads]
    torch.manual_seed(7)
    reference = torchjd.PCGradWeighting()(gramian(grads))
    torch.testing.assert_close(pcgrad_weights(gramian(grads), orders), reference, atol=1e-12, rtol=0)


def test_pcgrad_draws_its_orders_from_the_seed_and_step():
    grads = matrix("conflicting-3")
    again = [aggregate(PCGrad(TASKS, seed=3), grads).direction for _ in range(2)]
    assert torch.equal(again[0], again[1])
    directions = {tuple(PCGrad(TASKS, seed=3).aggregate(grads, torch.ones(3), TASKS, step).direction.tolist())
                  for step in range(12)}
    assert len(directions) > 1  # the order matters with three tasks, and changes with the step


@pytest.mark.slow
@pytest.mark.parametrize("name", MATRICES)
def test_mgda_finds_the_min_norm_point_torchjd_approaches(name):
    """Ours meets the conditions that define the min-norm point w of the simplex: (G w)_t >= w^T G w for every
    task, with equality where w_t > 0 (to 1e-9 of the Gram matrix's trace). TorchJD runs Sener and Koltun's
    Frank-Wolfe (here in float64, to gamma < 1e-12 or 10^5 steps), whose error shrinks only as 1/steps: its
    point is never nearer the origin than ours, and within 1e-3 of it (4e-4 on unequal-3, where 10^6 steps
    bring it to 2e-5)."""
    grads = matrix(name)
    made = aggregate(MGDA(MGDAConfig(), TASKS, 0), grads)
    weights = min_norm_weights(gramian(grads))
    gram = gramian(grads)
    least, tolerance = float(weights @ gram @ weights), 1e-9 * float(gram.trace())
    assert bool((gram @ weights >= least - tolerance).all())
    assert bool(((gram @ weights)[weights > 1e-9] - least).abs().max() < tolerance)
    torch.testing.assert_close(made.weights, weights.float())
    reference = torchjd.MGDA(epsilon=1e-12, max_iters=100_000)(grads.double())
    assert float(made.direction.norm()) <= float(reference.norm()) * (1 + 1e-6)
    assert relative_error(made.direction, reference) < 1e-3


@pytest.mark.parametrize("name", MATRICES)
def test_imtl_matches_torchjd(name):
    """The same closed form (the pseudo-inverse of the Gram matrix at float32's precision); ours in float64
    on a float32 Gram matrix, TorchJD's in float32."""
    grads = matrix(name)
    assert relative_error(aggregate(IMTLG(TASKS, 0), grads).direction, torchjd.IMTLG()(grads)) < 1e-5


@pytest.mark.parametrize("name", MATRICES)
def test_upgrad_matches_torchjd(name):
    """The same programs (trace-normalised Gram matrix plus 1e-4 I), both solved exactly (quadprog's
    active set, ours): equal to float32 rounding."""
    grads = matrix(name)
    mine = aggregate(UPGrad(UPGradConfig(), TASKS, 0), grads).direction
    assert relative_error(mine, torchjd.UPGrad()(grads)) < 1e-5


@pytest.mark.parametrize("scale", ["min", "median", "rmse"])
@pytest.mark.parametrize("name", MATRICES)
def test_alignedmtl_matches_torchjd(name, scale):
    """The same formula; TorchJD decomposes the Gram matrix in float32, ours in float64, so they differ by
    float32's epsilon times the matrix's condition (1e-4 on the unequal and near-degenerate ones)."""
    grads = matrix(name)
    mine = aggregate(AlignedMTL(AlignedMTLConfig(scale=scale), TASKS, 0), grads).direction
    assert relative_error(mine, torchjd.AlignedMTL(scale_mode=scale)(grads)) < 1e-4


@pytest.mark.parametrize("c", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("name", MATRICES)
def test_cagrad_matches_torchjd_and_solves_the_dual_at_least_as_well(name, c):
    """TorchJD solves the dual with an interior-point method (Clarabel, objective to about 1e-9); ours is
    exact up to its root search. Ours reaches a dual objective no higher, the primal's worst-task value
    equals it (strong duality: the solution is optimal), the directions agree to 1e-4 and the weights to 1e-4
    or 1e-3 of their size (about the square root of TorchJD's objective error, on a flat objective; the
    weights reach 20 on unequal-3)."""
    grads = matrix(name)
    gram = normalised(gramian(grads))
    size = len(grads)
    mean = torch.full((size,), 1 / size, dtype=torch.float64)
    radius = c * combined_norm(mean, gram)
    mine = cagrad_weights(gramian(grads), c)
    reference = torchjd.CAGradWeighting(c=c)(gram)
    torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-3)
    direction = aggregate(CAGrad(CAGradConfig(c=c), TASKS, 0), grads).direction
    assert relative_error(direction, torchjd.CAGrad(c=c)(grads)) < 1e-4
    if c > 0:
        def dual(weights: torch.Tensor) -> float:  # g_w . g0 + c ||g0|| ||g_w||, w = the weights' share beyond g0
            w = (weights - mean) / (weights - mean).sum()
            return float(w @ gram @ mean) + radius * combined_norm(w, gram)

        assert dual(mine) <= dual(reference) + 1e-12
        assert float((gram @ mine).min()) == pytest.approx(dual(mine), abs=1e-9)


# TorchJD's Nash-MTL (cvxpy's ECOS, 20 convex programs) fails on conflicting-3 and more-tasks-than-dimensions
# (the solver raises; it keeps its start, alpha = 1, whose alpha_t (G alpha)_t are far from 1): there, the
# test below checks the paper's equation instead.
NASH_SOLVED_BY_TORCHJD = ["conflicting-2", "aligned-2", "aligned-3", "unequal-3", "near-degenerate-3"]


@pytest.mark.parametrize("name", NASH_SOLVED_BY_TORCHJD)
def test_nashmtl_matches_torchjd_where_its_solver_succeeds(name):
    """TorchJD stops its sequence of programs once ||G alpha - 1 / alpha|| < 1e-3 on the normalised Gram
    matrix, ours at a Newton decrement below 1e-10: the weights agree to 1e-3."""
    grads = matrix(name)
    mine = aggregate(NashMTL(NashMTLConfig(max_norm=0.0), TASKS, 0), grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's notes on its solver
        reference = torchjd.NashMTL(n_tasks=len(grads), max_norm=0.0)(grads)
    assert relative_error(mine.direction, reference) < 1e-3


@pytest.mark.parametrize("name", MATRICES)
def test_nashmtl_solves_the_papers_equation(name):
    """alpha_t (G alpha)_t = 1 for every task (the Nash bargaining solution), to the solver's precision."""
    grads = matrix(name).double()
    weights = aggregate(NashMTL(NashMTLConfig(max_norm=0.0), TASKS, 0), grads).weights.double()
    torch.testing.assert_close(weights * (grads @ grads.T @ weights), torch.ones(len(grads), dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_nashmtl_weights_of_orthogonal_gradients_by_hand():
    """Orthogonal gradients: alpha_t ||g_t||^2 alpha_t = 1, so alpha_t = 1 / ||g_t||: (1/2, 1/4); d = (1, 1)
    of norm sqrt(2), scaled to --nashmtl-max-norm 1."""
    grads = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    made = aggregate(NashMTL(NashMTLConfig(max_norm=0.0), TASKS, 0), grads)
    torch.testing.assert_close(made.weights, torch.tensor([0.5, 0.25]))
    clipped = aggregate(NashMTL(NashMTLConfig(max_norm=1.0), TASKS, 0), grads)
    torch.testing.assert_close(clipped.direction, torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_nashmtl_reuses_its_weights_between_updates_and_keeps_them_in_its_state():
    balancer = NashMTL(NashMTLConfig(max_norm=0.0, update_every=2), TASKS[:2], 0)
    first = balancer.aggregate(torch.tensor([[2.0, 0.0], [0.0, 4.0]]), torch.ones(2), TASKS[:2], 0)
    second = balancer.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2), TASKS[:2], 1)
    torch.testing.assert_close(second.weights, first.weights)  # step 1: not an update step
    restored = NashMTL(NashMTLConfig(max_norm=0.0, update_every=2), TASKS[:2], 0)
    restored.load_state_dict(balancer.state_dict())
    again = restored.aggregate(torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.ones(2), TASKS[:2], 3)
    torch.testing.assert_close(again.weights, first.weights)
    third = balancer.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2), TASKS[:2], 2)
    torch.testing.assert_close(third.weights, torch.tensor([1.0, 1.0]))


def test_mgda_normalisations_scale_each_gradient_before_the_min_norm_point():
    """l2: the min-norm point of the unit gradients; loss: of g_t / L_t; loss+: of g_t / (L_t ||g_t||). For
    orthogonal unit-scaled gradients u_1, u_2 the min-norm point is (u_1 + u_2) / 2."""
    grads = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    unit = aggregate(MGDA(MGDAConfig(normalization="l2"), TASKS, 0), grads)
    torch.testing.assert_close(unit.direction, torch.tensor([0.5, 0.5]))
    losses = torch.tensor([3.0, 0.5])  # g_t / L_t: unit vectors again
    by_loss = aggregate(MGDA(MGDAConfig(normalization="loss"), TASKS, 0), grads, losses)
    torch.testing.assert_close(by_loss.direction, torch.tensor([0.5, 0.5]))
    both = aggregate(MGDA(MGDAConfig(normalization="loss+"), TASKS, 0), grads, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(both.direction, torch.tensor([0.25, 0.25]))


# --------------------------------------------------------------------------------------------------
# A two-task toy problem whose gradients conflict
# --------------------------------------------------------------------------------------------------

START = torch.tensor([0.0, 0.0])
TARGETS = torch.tensor([[-1.0, 0.0], [0.75, -0.25]])
SCALES = torch.tensor([0.5, 2.0])


def toy_losses(theta: torch.Tensor) -> torch.Tensor:
    """L_1 = 1/2 ||theta - a||^2, L_2 = 2 ||theta - b||^2: at theta = 0 their gradients are g_1 = (1, 0) and
    g_2 = (-3, 1), which conflict (g_1 . g_2 = -3) so much that their sum (-2, 1) increases L_1."""
    return SCALES * ((theta - TARGETS) ** 2).sum(dim=1)


def toy_gradients(theta: torch.Tensor) -> torch.Tensor:
    theta = theta.clone().requires_grad_(True)
    losses = toy_losses(theta)
    return torch.stack([torch.autograd.grad(loss, theta, retain_graph=True)[0] for loss in losses])  # (2, 2)


def test_the_toy_gradients_conflict():
    grads = toy_gradients(START)
    torch.testing.assert_close(grads, torch.tensor([[1.0, 0.0], [-3.0, 1.0]]))
    assert float(grads[0] @ grads.sum(dim=0)) < 0  # the summed update would increase L_1


def test_pcgrad_removes_the_conflicting_components_on_the_toy():
    """g_1' = g_1 - (g_1 . g_2) / ||g_2||^2 g_2 is orthogonal to g_2, g_2' = g_2 - (g_1 . g_2) / ||g_1||^2 g_1
    to g_1; the update is their sum, whatever the order (two tasks)."""
    g1, g2 = toy_gradients(START)
    projected_1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    projected_2 = g2 - (g1 @ g2) / (g1 @ g1) * g1
    assert float(projected_1 @ g2) == pytest.approx(0.0, abs=1e-6)
    assert float(projected_2 @ g1) == pytest.approx(0.0, abs=1e-6)
    made = aggregate(PCGrad(TASKS, 0), torch.stack([g1, g2]))
    torch.testing.assert_close(made.direction, projected_1 + projected_2)
    torch.testing.assert_close(made.weights @ torch.stack([g1, g2]), made.direction)


def test_pcgrad_leaves_gradients_that_do_not_conflict_alone():
    grads = matrix("aligned-2")
    torch.testing.assert_close(aggregate(PCGrad(TASKS, 0), grads).direction, grads.sum(dim=0))


def test_mgda_weights_match_the_closed_form_for_two_gradients():
    """alpha = clip(((g_2 - g_1) . g_2) / ||g_1 - g_2||^2, 0, 1) on g_1, 1 - alpha on g_2."""
    for grads in (toy_gradients(START), matrix("conflicting-2"), matrix("aligned-2"),
                  torch.tensor([[1.0, 0.0], [3.0, 0.1]])):  # the last: alpha clipped to 1
        g1, g2 = grads
        alpha = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))
        alpha = min(max(alpha, 0.0), 1.0)
        made = aggregate(MGDA(MGDAConfig(), TASKS, 0), grads)
        torch.testing.assert_close(made.weights, torch.tensor([alpha, 1 - alpha]), atol=1e-6, rtol=0)


NON_CONFLICTING = {
    "mgda": lambda: MGDA(MGDAConfig(), TASKS, 0),
    "upgrad": lambda: UPGrad(UPGradConfig(), TASKS, 0),
    "imtl": lambda: IMTLG(TASKS, 0),
    "nashmtl": lambda: NashMTL(NashMTLConfig(), TASKS, 0),
}


@pytest.mark.parametrize("method", NON_CONFLICTING)
def test_a_non_conflicting_method_descends_every_task_on_the_toy(method):
    """d . g_t >= 0 for every task (MGDA: >= ||d||^2; UPGrad up to its ridge), on the toy and on every fixed
    matrix; and a small step along d lowers both toy losses, where the summed update raises L_1."""
    for grads in (toy_gradients(START), *map(matrix, MATRICES)):
        made = aggregate(NON_CONFLICTING[method](), grads)
        inner = grads.double() @ made.direction.double()
        assert float(inner.min()) >= -1e-4 * float(grads.norm() ** 2), (method, grads)
        if method == "mgda":
            assert float(inner.min()) >= float(made.direction.norm() ** 2) * (1 - 1e-5)
    direction = aggregate(NON_CONFLICTING[method](), toy_gradients(START)).direction
    before = toy_losses(START)
    assert bool((toy_losses(START - 0.01 * direction) < before).all())
    assert float(toy_losses(START - 0.01 * toy_gradients(START).sum(dim=0))[0]) > float(before[0])


FULL_RANK = [name for name in MATRICES if name not in ("near-degenerate-3", "more-tasks-than-dimensions")]


def test_imtl_projects_equally_on_every_task_direction():
    """Where the Gram matrix has full rank at float32's precision (not near-degenerate-3, whose smallest
    eigenvalue is below T x float32's epsilon of the largest, nor more tasks than dimensions: there IMTL-G is
    TorchJD's least-squares generalisation)."""
    for grads in (toy_gradients(START), *map(matrix, FULL_RANK)):
        made = aggregate(IMTLG(TASKS, 0), grads)
        units = grads / grads.norm(dim=1, keepdim=True)
        projections = units @ made.direction
        torch.testing.assert_close(projections, projections[:1].expand_as(projections), atol=1e-5, rtol=1e-4)
        assert float(made.weights.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("c", [0.25, 0.5, 0.9])
def test_cagrad_is_the_best_update_for_the_worst_task_in_its_ball(c):
    """On the toy (two parameters), d lies on the ball ||d - g0|| = c ||g0||, its worst task's improvement
    min_t g_t . d is the best of 100000 points on that circle's boundary (to the grid's precision) and at
    least the mean gradient's."""
    grads = toy_gradients(START).double()
    g0 = grads.mean(dim=0)
    direction = aggregate(CAGrad(CAGradConfig(c=c), TASKS, 0), grads.float()).direction.double()
    radius = c * float(g0.norm())
    assert float((direction - g0).norm()) == pytest.approx(radius, rel=1e-5)
    angles = torch.linspace(0, 2 * math.pi, 100_000, dtype=torch.float64)
    circle = g0 + radius * torch.stack([angles.cos(), angles.sin()], dim=1)  # (N, 2)
    best = float((circle @ grads.T).min(dim=1).values.max())
    worst = float((grads @ direction).min())
    assert worst == pytest.approx(best, abs=1e-6)
    assert worst >= float((grads @ g0).min())


def test_cagrad_with_c_0_is_the_mean_gradient():
    grads = toy_gradients(START)
    torch.testing.assert_close(aggregate(CAGrad(CAGradConfig(c=0.0), TASKS, 0), grads).direction, grads.mean(dim=0))


@pytest.mark.parametrize("name", ["toy", *MATRICES])
def test_alignedmtl_aligns_the_task_gradients(name):
    """The aligned gradients J^T B are orthogonal with the same norm (Gram matrix lambda_min I on the rank of
    J), and the update projects equally on each of them (lambda_min / T)."""
    grads = (toy_gradients(START) if name == "toy" else matrix(name)).double()
    made = aggregate(AlignedMTL(AlignedMTLConfig(), TASKS, 0), grads.float())
    aligned = balance_transformation(gramian(grads), "min") @ grads  # rows: the aligned gradients (T, P)
    aligned_gram = aligned @ aligned.T
    eigenvalues = torch.linalg.eigvalsh(gramian(grads))
    rank = int((eigenvalues > eigenvalues.max() * len(grads) * GRAM_EPSILON).sum())
    if rank == len(grads):
        torch.testing.assert_close(aligned_gram, eigenvalues.min() * torch.eye(len(grads), dtype=torch.float64),
                                   atol=1e-5 * float(eigenvalues.max()), rtol=0)
        projections = aligned @ made.direction.double()
        torch.testing.assert_close(projections, projections[:1].expand_as(projections), atol=1e-5, rtol=1e-4)
    else:  # the aligned gradients span J's row space, their nonzero singular values all equal
        singular = torch.linalg.svdvals(aligned)[:rank]
        torch.testing.assert_close(singular, singular[:1].expand_as(singular), rtol=1e-5, atol=0)


# --------------------------------------------------------------------------------------------------
# Every method, as registered: edge cases and search spaces
# --------------------------------------------------------------------------------------------------

METHODS = ["pcgrad", "cagrad", "mgda", "imtl", "nashmtl", "alignedmtl", "upgrad"]


def registered(method: str):
    """The balancer component plugin ``method`` registers, as a run enabling it finds it."""
    from core.plugin.registries import Registries

    return Registries(make_plugin_manager(enabled=(method,))).balancers[method]


def default_settings(method: str):
    settings = registered(method).settings
    return settings() if settings is not None else None


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_gradients_pass_through_for_the_loop_to_stop_the_run(method):
    """A diverging run's NaN or infinite gradients reach the direction (the mean), not a solver's exception:
    the loop's finite-loss check then stops the run naming the step and task."""
    balancer = registered(method).factory(default_settings(method), TASKS, 0)
    for bad in (float("nan"), float("inf")):
        grads = matrix("conflicting-3")
        grads[1, 0] = bad
        made = aggregate(balancer, grads)
        assert not bool(torch.isfinite(made.direction).all())
        torch.testing.assert_close(made.weights, torch.full((3,), 1 / 3))


@pytest.mark.parametrize("method", METHODS)
def test_a_step_of_one_task_follows_its_gradient(method):
    """A sampler of one task per step: every method's update is that task's gradient times a positive factor
    (1 + c for CAGrad, 1 / ||g|| for Nash-MTL, 1 for the others)."""
    balancer = registered(method).factory(default_settings(method), TASKS, 0)
    grads = torch.tensor([[3.0, -4.0, 0.0]])
    made = balancer.aggregate(grads, torch.ones(1), ["sts"], 0)
    factor = {"cagrad": 1.5, "nashmtl": 1 / 5}.get(method, 1.0)
    torch.testing.assert_close(made.direction, factor * grads[0])


@pytest.mark.parametrize("method", METHODS)
def test_a_methods_search_space_suggests_valid_settings(tiny_config, method):
    """Each method's own space (where it has one) suggests values its settings class accepts, and a study
    would pass them to the balancer it builds."""
    import optuna

    component = registered(method)
    assert component.help and (component.space is None) == (method in ("pcgrad", "imtl", "upgrad"))
    if component.space is None:
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        settings = component.settings(**component.space(study.ask(), tiny_config))
        balancer = component.factory(settings, TASKS, 0)
        made = aggregate(balancer, matrix("conflicting-3"))
        assert bool(torch.isfinite(made.direction).all())


# --------------------------------------------------------------------------------------------------
# In real runs
# --------------------------------------------------------------------------------------------------


def aggregated(tiny_config, method: str, **changes):
    return attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=(method,), update="summed", sampler="rrobin",
                        **changes)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_method_trains_and_logs_its_weights_and_the_gradients_cosine(tiny_config, method):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = aggregated(tiny_config, method, epochs=1)
    run = prepare(config)
    assert run.pm.get_plugin("balancer") is run.balancer and type(run.balancer).__module__.endswith(method)
    before = {name: value.clone() for name, value in run.model.state_dict().items()}
    train(run)
    events = EventAccumulator(str(Path(config.output_dir) / "tensorboard")).Reload()
    assert {"balance/weight/sst", "balance/weight/sts", "balance/cosine/sst-sts"} <= set(events.Tags()["scalars"])
    weights = [event.value for event in events.Scalars("balance/weight/sst")]
    assert weights and all(math.isfinite(weight) for weight in weights)
    after = run.model.state_dict()
    assert any(not torch.equal(after[name], value) for name, value in before.items())  # it trained


class StopAtEpoch(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_stopped_run_resumes_to_the_uninterrupted_one_with_the_methods_state(tiny_config, tmp_path, method):
    """Stopped as its second epoch starts (after the first epoch's last.pt), resumed: the same metrics, model
    and balancer state as a run never stopped. Nash-MTL solves every other step, so that the resumed run's
    first step reuses the alpha it restored."""
    changes = {"components": {"nashmtl": {"update_every": 2}}} if method == "nashmtl" else {}
    reference = aggregated(tiny_config, method, output_dir=str(tmp_path / "reference"), **changes)
    best = train(prepare(reference))

    class Interrupt:
        @hookimpl
        def platform_on_epoch_start(self, epoch):
            if epoch == 1:
                raise StopAtEpoch

    stopped = attrs.evolve(reference, output_dir=str(tmp_path / "stopped"))
    pm = make_plugin_manager(enabled=stopped.plugins)
    pm.register(Interrupt(), name="interrupt")
    run = prepare(stopped, pm)
    with pytest.raises(StopAtEpoch):
        train(run)
    if method == "nashmtl":
        assert run.global_step % 2 == 1  # the resumed run starts on a step that reuses the saved alpha
    resumed = prepare(stopped, resume=True)
    assert resumed.epoch == 1
    assert train(resumed) == best
    final = [load(Path(folder) / "last.pt") for folder in (reference.output_dir, stopped.output_dir)]
    for name, weight in final[0]["model"].items():
        assert torch.equal(final[1]["model"][name], weight), name
    assert final[0]["balancer"].keys() == final[1]["balancer"].keys()
    for key, value in final[0]["balancer"].items():
        assert torch.equal(final[1]["balancer"][key], value), key
    if method == "nashmtl":
        assert bool(torch.isfinite(final[0]["balancer"]["alpha"]).all())
