"""What a balancer is: how the task losses of one step become one update.

A step (a sampler's plan entry) holds a batch of one or more tasks; ``rrobin`` and ``interleaved`` give
every task in every step. Under ``--update summed`` the step's tasks make one optimizer update, and the
run's balancer decides how. Two kinds of method fit one base class:

- **Loss-based** (``gradients = False``): :meth:`Balancer.weights` gives each task's factor on its loss
  before the step (from the balancer's state: uncertainty weighting's log-variances, DWA's loss history,
  RLW's draw); each task's backward carries its factor, so the update is the gradient of
  ``sum_t w_t L_t`` at the cost of the plain summed update.
- **Gradient-based** (``gradients = True``): each task's backward is kept apart; the loop hands
  :meth:`Balancer.aggregate` the matrix of the tasks' gradients of the *shared* parameters (every trainable
  parameter not owned by one task's head: the encoder, and a topology's shared layers) and writes the
  direction it returns into them. A task's own head keeps its own gradient (as LibMTL's gradient methods
  do), or that times a factor the method returns (GradNorm's and FAMO's loss weights). This keeps T
  gradients of the shared parameters at once (T tasks x 4 bytes x their size).

After the optimizer step, :meth:`Balancer.update` receives each task's loss on the step's batch (the mean
over every process's examples, so that every process updates the same state). The default balancer,
``equal``, gives no factors and updates nothing: the summed update the loop always made.

Like a regularizer, a balancer receives the loop hooks (``platform_on_epoch_end`` to roll a loss history,
say) and its :meth:`~Balancer.state_dict` is saved in ``last.pt``. Anything random draws from
:func:`step_generator`, a pure function of (seed, step), so every process draws alike and a resumed run
draws again what it drew. ``--loss-weights`` scales each task's loss before the balancer sees it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import attrs
import torch


@attrs.frozen
class Aggregation:
    """What a gradient-based balancer makes of one step's task gradients."""

    direction: torch.Tensor  # (P,): the update of the shared parameters
    weights: torch.Tensor | None = None  # (T,): direction = weights @ grads, where the method is such a combination
    head_factors: torch.Tensor | None = None  # (T,): factor on each task's own head's gradient; None: 1


class Balancer:
    """Base class: the equal weighting of the plain summed update. Override :meth:`weights` (a
    loss-based method) or set ``gradients = True`` and override :meth:`aggregate` (a gradient-based one)."""

    gradients: ClassVar[bool] = False  # whether the loop keeps each task's gradient apart for aggregate()
    observes_losses: ClassVar[bool] = False  # whether update() needs the step's losses (one all-reduce)

    def __init__(self, tasks: list[str], seed: int):
        self.tasks, self.seed = list(tasks), seed

    def weights(self, tasks: list[str], step: int) -> dict[str, torch.Tensor | float]:
        """Each of the step's ``tasks``' factor on its loss in global step ``step`` (0-based), before the
        step's losses exist; an empty dict: no factors (every task weighs 1)."""
        return {}

    def aggregate(self, grads: torch.Tensor, losses: torch.Tensor, tasks: list[str], step: int) -> Aggregation:
        """The update of the shared parameters from ``grads`` (T, P), the step's tasks' gradients of them (row
        t: task ``tasks[t]``), and ``losses`` (T,), their losses (every process's mean). Called only when
        ``gradients`` is True; the sum, here."""
        return Aggregation(grads.sum(dim=0), torch.ones(len(tasks), dtype=grads.dtype, device=grads.device))

    def update(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """After the optimizer step of global step ``step``: each of the step's tasks' loss (detached, the
        mean over every process's examples). Called only when ``observes_losses`` is True."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class BalancerFactory(Protocol):
    """What a balancer component's factory is: ``factory(settings, tasks, seed) -> Balancer``, with
    ``settings`` an instance of the component's settings class (None when it has none) and ``tasks`` the
    run's task names."""

    def __call__(self, settings: Any, tasks: list[str], seed: int) -> Balancer: ...


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator private to one (seed, global step): a balancer's draws never touch global RNG state."""
    return torch.Generator().manual_seed(seed * 1_000_033 + step * 7_727 + 31)
