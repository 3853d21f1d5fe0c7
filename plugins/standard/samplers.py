"""Built-in batch samplers: how the task batches of an epoch are scheduled into steps.

Every sampler builds an epoch's plan from (seed, epoch) alone and extends ``PlannedSampler``
(``core.train.sampling``). Within a task, each epoch walks a fresh permutation of its examples, salted by
the task's name, so a task sees the same order whatever the other tasks are; a task that runs out
mid-epoch wraps around into a new permutation salted by the wrap count. A task batch never holds more examples than its task has:
a larger batch size (``--batch-size 1000000``, or ``--limit`` below it) takes each example once, instead
of the same examples over and over (a million-example batch of a 16-example task). ``state_dict()``
holds the settings only: with them the plans are exact, and a resumed run with other settings is
refused by ``load_state_dict()``.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs import validators as v

from core.api import (
    Component,
    ConfigError,
    PlannedSampler,
    SamplerFactory,
    Step,
    assignments,
    field,
    hookimpl,
)

_DRAW = 17  # salt of the task-choice draws, apart from the per-task permutations


@attrs.frozen
class RRobinPreConfig:
    task: str = field("", "task of the pre-phase (its examples the round-robin part leaves out); empty: the largest")


@attrs.frozen
class InterleavedConfig:
    ratios: dict[str, int] = field(attrs.Factory(dict), "per-task batch sizes, e.g. sst=8,quora=32,sts=4; tasks "
                                   "left out (or all, if none is given) get batch_size scaled by size / largest size",
                                   converter=assignments(int, "TASK=POSITIVE_INT, e.g. 'sst=8,quora=32'", lambda n: n >= 1),
                                   metadata={"metavar": "TASK=N,..."})


@attrs.frozen
class AnnealedConfig:
    alpha_floor: float = field(0.5, "exponent of the task sizes at the last step (1 at the first step)",
                               validator=[v.ge(0.0), v.le(1.0)])


def _chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


class RoundRobin(PlannedSampler):
    """One batch of every task per step; an epoch covers as many examples of each task as the smallest has."""

    name = "rrobin"

    def steps_per_epoch(self) -> int:
        return math.ceil(min(self.sizes.values()) / self.batch_size)

    def plan(self, epoch: int) -> list[Step]:
        covered = min(self.sizes.values())
        chunks = {task: _chunks(self.order(task, epoch)[:covered], self.batch_size) for task in self.tasks}
        return [[(task, chunks[task][i]) for task in self.tasks] for i in range(len(chunks[self.tasks[0]]))]


class RoundRobinPre(RoundRobin):
    """A pre-phase over the examples of one task that the round-robin part leaves out, then round-robin."""

    name = "rrobin-pre"

    def __init__(self, settings, sizes, batch_size, seed, epochs):
        super().__init__(settings or RRobinPreConfig(), sizes, batch_size, seed, epochs)
        self.pre = self.settings.task or max(self.sizes, key=lambda task: self.sizes[task])
        if self.pre not in self.sizes:
            raise ConfigError(f"sampler 'rrobin-pre': task {self.pre!r} is not among the tasks of this run "
                             f"({', '.join(self.tasks)})")

    def steps_per_epoch(self) -> int:
        rest = self.sizes[self.pre] - min(self.sizes.values())
        return math.ceil(rest / self.batch_size) + super().steps_per_epoch()

    def plan(self, epoch: int) -> list[Step]:
        rest = self.order(self.pre, epoch)[min(self.sizes.values()):]  # the part rrobin leaves out
        return [[(self.pre, chunk)] for chunk in _chunks(rest, self.batch_size)] + super().plan(epoch)


class Interleaved(PlannedSampler):
    """One batch of every task per step, batch sizes in proportion to task sizes; as long as the largest task."""

    name = "interleaved"

    def __init__(self, settings, sizes, batch_size, seed, epochs):
        super().__init__(settings or InterleavedConfig(), sizes, batch_size, seed, epochs)
        ratios = self.settings.ratios
        unknown = [task for task in ratios if task not in self.sizes]
        if unknown:
            raise ConfigError(f"sampler 'interleaved': ratios name task(s) {', '.join(unknown)} not among the "
                             f"tasks of this run ({', '.join(self.tasks)})")
        largest = max(self.sizes.values())
        self.batch_sizes = {task: min(size, ratios.get(task, max(1, round(batch_size * size / largest))))
                            for task, size in self.sizes.items()}

    def steps_per_epoch(self) -> int:
        return math.ceil(max(self.sizes.values()) / self.batch_size)

    def plan(self, epoch: int) -> list[Step]:
        streams = self.streams(epoch)
        return [[(task, streams[task].take(self.batch_sizes[task])) for task in self.tasks]
                for _ in range(self.steps_per_epoch())]


class Proportional(PlannedSampler):
    """One task per step, drawn with probability proportional to its size."""

    name = "proportional"

    def steps_per_epoch(self) -> int:
        return math.ceil(sum(self.sizes.values()) / self.batch_size)

    def probabilities(self, epoch: int) -> torch.Tensor:
        """The task probabilities of every step of ``epoch``, (steps, tasks)."""
        sizes = torch.tensor([float(self.sizes[task]) for task in self.tasks], dtype=torch.float64)
        return (sizes / sizes.sum()).expand(self.steps_per_epoch(), -1)

    def plan(self, epoch: int) -> list[Step]:
        streams = self.streams(epoch)
        return [[(task, streams[task].take(min(self.batch_size, self.sizes[task])))]
                for task in self.draw_tasks(self.probabilities(epoch), epoch, _DRAW)]


class Annealed(Proportional):
    """One task per step, drawn with probability proportional to size^alpha, alpha annealed from 1 to a floor."""

    name = "annealed"
    keep_epochs = True

    def __init__(self, settings, sizes, batch_size, seed, epochs):
        super().__init__(settings or AnnealedConfig(), sizes, batch_size, seed, epochs)

    def alpha(self, global_step: int) -> float:
        """1 at the first step of training, ``alpha_floor`` at the last, linear in between."""
        last = max(self.epochs * self.steps_per_epoch() - 1, 1)
        return 1.0 - (1.0 - self.settings.alpha_floor) * min(global_step, last) / last

    def probabilities(self, epoch: int) -> torch.Tensor:
        first = epoch * self.steps_per_epoch()
        alphas = torch.tensor([self.alpha(first + s) for s in range(self.steps_per_epoch())], dtype=torch.float64)
        log_sizes = torch.tensor([math.log(self.sizes[task]) for task in self.tasks], dtype=torch.float64)
        return torch.softmax(alphas[:, None] * log_sizes[None, :], dim=1)  # ∝ size^alpha, (S, T)


def interleaved_space(trial, base) -> dict:
    """Per-task batch sizes (``ratio_<task>``, 1..64, log scale)."""
    return {"ratios": {task: trial.suggest_int(f"ratio_{task}", 1, 64, log=True) for task in base.tasks}}


def annealed_space(trial, base) -> dict:
    """The exponent of the task sizes at the last step (``alpha_floor``, 0..1)."""
    return {"alpha_floor": trial.suggest_float("alpha_floor", 0.0, 1.0)}


@hookimpl
def platform_samplers() -> list[Component[SamplerFactory]]:
    return [
        Component("rrobin", RoundRobin, help="round-robin, one batch of every task per step; epoch = smallest task"),
        Component("rrobin-pre", RoundRobinPre, settings=RRobinPreConfig,
                  help="a pre-phase over one task's examples round-robin leaves out, then round-robin"),
        Component("interleaved", Interleaved, settings=InterleavedConfig, space=interleaved_space, default=True,
                  help="every task in every step, batch sizes proportional to task sizes; epoch = largest task"),
        Component("proportional", Proportional,
                  help="one task per step, drawn with probability proportional to size"),
        Component("annealed", Annealed, settings=AnnealedConfig, space=annealed_space,
                  help="one task per step, probability proportional to size^alpha, alpha annealed from 1 to a floor"),
    ]
