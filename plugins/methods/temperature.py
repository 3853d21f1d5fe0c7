"""temperature plugin (opt-in: --plugins temperature --sampler temperature): temperature sampling of tasks
(Arivazhagan et al. 2019; jiant's temperature sampler).

Task t of N_t training examples is drawn with probability

    p_t = min(N_t, cap)^(1/T) / Σ_u min(N_u, cap)^(1/T)

T = 1 is proportional to size (the ``proportional`` sampler), T → ∞ uniform; between them small tasks
are drawn more often than their size alone would have them. ``--temperature-mode one-task`` (default)
draws one task per step, a batch of ``--batch-size`` of its examples; an epoch has ⌈Σ N_t / batch⌉ steps.
``every-task`` puts a batch of every task in each step instead, task t's batch size
b_t = max(1, round(batch · p_t / max_u p_u)) (the likeliest task gets ``--batch-size``; T = 1 gives the
``interleaved`` sampler's sizes), for methods that need every task in a step; an epoch has
⌈Σ N_t / Σ b_t⌉ steps. Either way an epoch holds about as many examples as the training data, and a
task's examples come from a fresh permutation each epoch, salted by its name, wrapping into a new one
when it runs out. A plan is a pure function of (seed, epoch), so a resumed run replays it. How the
modes compose with ``--update summed|sequential``: docs/methods.md.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from attrs import validators as v

from core.api import (
    Component,
    PlannedSampler,
    SamplerFactory,
    Step,
    field,
    hookimpl,
    is_positive,
    positive_or_none,
)

PLATFORM_OPT_IN = True
NAME = "temperature"
MODES = ("one-task", "every-task")
_DRAW = 31  # salt of the task draws, apart from the per-task permutations


def finite_positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not is_positive(value):
        raise ValueError(f"{attribute.name} must be a positive, finite number (1: proportional to size, larger: "
                         f"closer to uniform), got {value}")


@attrs.frozen
class TemperatureConfig:
    t: float = field(2.0, "the temperature T: a task is drawn with probability proportional to size^(1/T); 1: "
                          "proportional to size, large: uniform", validator=finite_positive)
    cap: int | None = field(None, "a task's size counts at most this many examples in its probability (jiant's "
                                  "examples cap); None: no cap", validator=positive_or_none)
    mode: str = field("one-task", "one-task: one task drawn per step; every-task: a batch of every task per step, "
                                  "batch sizes in proportion to the probabilities", validator=v.in_(MODES),
                      metadata={"choices": MODES})


def task_probabilities(sizes: dict[str, int], t: float, cap: int | None = None) -> dict[str, float]:
    """p_t ∝ min(N_t, cap)^(1/T), computed as a softmax of log sizes / T (exact for any T)."""
    counted = torch.tensor([math.log(min(size, cap) if cap else size) for size in sizes.values()], dtype=torch.float64)
    return dict(zip(sizes, torch.softmax(counted / t, dim=0).tolist()))


class TemperatureSampler(PlannedSampler):
    """Tasks drawn with probability ∝ size^(1/T): one per step, or every task per step with batch sizes
    in proportion (``mode``)."""

    name = NAME

    def __init__(self, settings: TemperatureConfig | None, sizes: dict[str, int], batch_size: int, seed: int,
                 epochs: int):
        super().__init__(settings or TemperatureConfig(), sizes, batch_size, seed, epochs)
        self.probabilities = task_probabilities(self.sizes, self.settings.t, self.settings.cap)
        likeliest = max(self.probabilities.values())
        self.batch_sizes = {task: min(self.sizes[task], max(1, round(batch_size * p / likeliest)))
                            for task, p in self.probabilities.items()}

    def steps_per_epoch(self) -> int:
        step = sum(self.batch_sizes.values()) if self.settings.mode == "every-task" else self.batch_size
        return math.ceil(sum(self.sizes.values()) / step)

    def draws(self, epoch: int) -> list[str]:
        """The task of every step of ``epoch`` (one-task mode): inverse-CDF draws from p."""
        p = torch.tensor([self.probabilities[task] for task in self.tasks], dtype=torch.float64)
        return self.draw_tasks(p.expand(self.steps_per_epoch(), -1), epoch, _DRAW)

    def plan(self, epoch: int) -> list[Step]:
        streams = self.streams(epoch)
        if self.settings.mode == "every-task":
            return [[(task, streams[task].take(self.batch_sizes[task])) for task in self.tasks]
                    for _ in range(self.steps_per_epoch())]
        return [[(task, streams[task].take(min(self.batch_size, self.sizes[task])))] for task in self.draws(epoch)]


def temperature_space(trial: Any, base: Any) -> dict[str, float]:
    """The temperature (``temperature_t``, 1..10, log scale: proportional to size .. nearly uniform)."""
    return {"t": trial.suggest_float("temperature_t", 1.0, 10.0, log=True)}


@hookimpl
def platform_samplers() -> list[Component[SamplerFactory]]:
    return [Component(NAME, TemperatureSampler, settings=TemperatureConfig, space=temperature_space,
                      help="tasks drawn with probability proportional to size^(1/T), one per step or every task "
                           "per step with batch sizes in proportion")]
