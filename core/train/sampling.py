"""What a sampler produces: an epoch's plan of optimizer steps, each a list of task batches.

A plan is a pure function of (seed, epoch), so a resumed run regenerates the same plan and skips the
steps it has done: sampler state is exact without pickling generators. ``PlannedSampler`` is the base every
built-in sampler extends (and a third-party one may).
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar, Protocol

import attrs
import torch

from core.base.errors import ConfigError

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


_WRAP = 104_729  # a prime far from the epoch stride (7919) so (epoch, wrap) salts never collide


def task_salt(task: str, wrap: int = 0) -> int:
    """The salt of a task's permutations: its name's CRC (stable across processes, unlike hash()), and how
    many times the task has wrapped around within the epoch."""
    return zlib.crc32(task.encode()) + wrap * _WRAP


class TaskStream:
    """One task's examples in one epoch: consecutive chunks of a permutation salted by the task's name,
    wrapping into a new permutation (salted by the wrap count) when it runs out."""

    def __init__(self, size: int, seed: int, epoch: int, task: str):
        self.size, self.seed, self.epoch, self.task = size, seed, epoch, task
        self.wrap, self.pos = 0, 0
        self.order = permutation(size, seed, epoch, task_salt(task))

    def take(self, n: int) -> list[int]:
        batch: list[int] = []
        while len(batch) < n:
            if self.pos == self.size:
                self.wrap, self.pos = self.wrap + 1, 0
                self.order = permutation(self.size, self.seed, self.epoch, task_salt(self.task, self.wrap))
            k = min(n - len(batch), self.size - self.pos)
            batch += self.order[self.pos:self.pos + k]
            self.pos += k
        return batch


class PlannedSampler:
    """A base for samplers (built-in and third-party): checks the sizes, batch size and epochs it is
    given, keeps its settings as its state (a resumed run with other settings is refused), and gives each
    task's examples in an epoch as a permutation (``order``) or as streams that wrap (``streams``).
    Subclasses set ``name`` and write ``steps_per_epoch`` and ``plan``."""

    name: ClassVar[str] = ""
    keep_epochs: ClassVar[bool] = False  # whether a resumed run must keep the number of epochs

    def __init__(self, settings: Any, sizes: dict[str, int], batch_size: int, seed: int, epochs: int):
        if not sizes:
            raise ConfigError(f"sampler {self.name!r}: no tasks to sample from")
        empty = [task for task, size in sizes.items() if size < 1]
        if empty:
            raise ConfigError(f"sampler {self.name!r}: task(s) {', '.join(empty)} have no training examples")
        if batch_size < 1 or epochs < 1:
            raise ConfigError(f"sampler {self.name!r}: batch_size and epochs must be >= 1, got {batch_size}, {epochs}")
        self.settings, self.sizes, self.batch_size = settings, dict(sizes), batch_size
        self.seed, self.epochs = seed, epochs
        self.tasks = list(self.sizes)

    def state_dict(self) -> dict:
        state: dict[str, Any] = {"sampler": self.name, "sizes": dict(self.sizes), "batch_size": self.batch_size,
                                 "seed": self.seed}
        if self.keep_epochs:
            state["epochs"] = self.epochs
        return state | (attrs.asdict(self.settings) if self.settings is not None else {})

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        diffs = [f"{key}: {state.get(key)!r} in the checkpoint, {mine.get(key)!r} in this run"
                 for key in sorted(set(mine) | set(state)) if state.get(key) != mine.get(key)]
        if diffs:
            raise ConfigError("the checkpoint's sampler settings differ from this run's: " + "; ".join(diffs))

    def order(self, task: str, epoch: int) -> list[int]:
        """Task's examples in the order of ``epoch``: a permutation salted by the task's name."""
        return permutation(self.sizes[task], self.seed, epoch, task_salt(task))

    def streams(self, epoch: int) -> dict[str, TaskStream]:
        """A stream of every task's examples in ``epoch`` (wrapping into new permutations)."""
        return {task: TaskStream(self.sizes[task], self.seed, epoch, task) for task in self.tasks}

    def draw_tasks(self, probabilities: torch.Tensor, epoch: int, salt: int) -> list[str]:
        """A task per step, drawn by inverse CDF from ``probabilities`` (steps, tasks; rows sum to 1), with
        uniforms private to (seed, epoch, salt)."""
        uniform = torch.rand(probabilities.shape[0], 1, generator=generator(self.seed, epoch, salt),
                             dtype=torch.float64)
        picks = (probabilities.cumsum(1) < uniform).sum(1).clamp(max=len(self.tasks) - 1).tolist()  # (steps,)
        return [self.tasks[i] for i in picks]
