"""What a regularizer is: extra loss terms for a task batch, plus optional state.

A regularizer plugin registers a factory ``factory(config, model) -> Regularizer``. The trainer adds
the returned terms to the task loss before ``backward`` and calls ``after_step`` after every
optimizer step (momentum teachers update there). State is saved in run checkpoints.
"""

from __future__ import annotations

from typing import Callable

import torch

from core.data import Batch


class Regularizer:
    """Base class: override :meth:`terms`; the rest has sensible no-op defaults."""

    name = "regularizer"

    def terms(self, model: torch.nn.Module, batch: Batch, output: torch.Tensor,
              forward: Callable[..., torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        """Named loss terms (already weighted) to add to the task loss.

        ``output`` is the head output of ``batch``; ``forward(embedding_hook=...)`` recomputes it
        with a perturbed embedding layer; ``progress`` runs from 0 to 1 over training."""
        return {}

    def task_loss_weight(self, batch: Batch, progress: float) -> float:
        """Factor on the gold-label task loss of ``batch`` (distillation anneals it from 0 to 1)."""
        return 1.0

    def after_step(self, model: torch.nn.Module) -> None:
        """Called after every optimizer step."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
