"""What a sampler produces: an epoch's plan of optimizer steps, each a list of task batches.

A plan is a pure function of (seed, epoch), so a resumed run regenerates the same plan and skips the
steps it has done: sampler state is exact without pickling generators.
"""

from __future__ import annotations

from typing import Protocol

import torch

TaskBatch = tuple[str, list[int]]  # (task name, example indices in that task's train split)
Step = list[TaskBatch]  # the task batches of one step (one optimizer step each, or summed)


class Sampler(Protocol):
    def steps_per_epoch(self) -> int: ...

    def plan(self, epoch: int) -> list[Step]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A generator private to one (seed, epoch): plans never depend on global RNG state."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)


def permutation(size: int, seed: int, epoch: int, salt: int = 0) -> list[int]:
    return torch.randperm(size, generator=generator(seed, epoch, salt)).tolist()
