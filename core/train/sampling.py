"""What a sampler produces: an epoch's plan of optimizer steps, each a list of task batches.

A plan is a pure function of (seed, epoch), so a resumed run regenerates the same plan and skips the
steps it has done: sampler state is exact without pickling generators.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

TaskBatch = tuple[str, list[int]]  # (task name, example indices in that task's train split)
Step = list[TaskBatch]  # the task batches of one step (one optimizer step each, or summed)


class Sampler(Protocol):
    """An epoch's plan of steps. The plan is fixed when the epoch starts (a pure function of the seed and
    the epoch, so a resumed run replays it): a sampler cannot adapt to the losses within an epoch, only
    between epochs, through what ``plan(epoch)`` derives from its settings."""

    def steps_per_epoch(self) -> int:
        """Steps of every epoch's plan."""

    def plan(self, epoch: int) -> list[Step]:
        """The steps of ``epoch``: each a list of (task, example indices) batches."""

    def state_dict(self) -> dict:
        """What a resume checks (settings); the plans themselves are recomputed."""

    def load_state_dict(self, state: dict) -> None:
        """Refuse a checkpoint written with other settings."""


class SamplerFactory(Protocol):
    """What a sampler component's factory is: ``factory(settings, sizes, batch_size, seed, epochs) ->
    Sampler``, with ``settings`` an instance of the component's settings class (None when it has none)
    and ``sizes`` the number of training examples of each task."""

    def __call__(self, settings: Any, sizes: dict[str, int], batch_size: int, seed: int, epochs: int) -> Sampler: ...


def generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A generator private to one (seed, epoch): plans never depend on global RNG state."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)


def permutation(size: int, seed: int, epoch: int, salt: int = 0) -> list[int]:
    return torch.randperm(size, generator=generator(seed, epoch, salt)).tolist()
