"""What a regularizer is: extra loss terms for a task batch, plus optional state.

A regularizer plugin (opt-in: ``PLATFORM_OPT_IN = True``) registers a factory ``factory(config, model)
-> Regularizer``. The trainer calls, in a run's order: :meth:`Regularizer.on_train_start` once (also
after a resume), then per task batch :meth:`~Regularizer.task_loss_weight` and :meth:`~Regularizer.terms`
(added to the task loss before ``backward``), and :meth:`~Regularizer.after_step` after every optimizer
step. Its state goes into run checkpoints. The TensorBoard plugin logs every term it returns, and its
:meth:`~Regularizer.scalars`, as ``<name>/<task>/<term>``: a regularizer needs no hook of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from core.data.batch import Batch

if TYPE_CHECKING:
    from core.model.multitask import MultitaskModel
    from core.train.context import RunContext


class Regularizer:
    """Base class: override :meth:`terms`; the rest has sensible no-op defaults."""

    def on_train_start(self, run: RunContext) -> None:
        """Called once before training starts (also after a resume), with the whole run in hand."""

    def terms(self, model: MultitaskModel, batch: Batch, output: torch.Tensor,
              forward: Callable[[], torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        """Named loss terms (already weighted) to add to the task loss.

        ``output`` is the head output of ``batch``; ``forward()`` computes it again (under
        :func:`core.multitask.perturbed_embeddings`, say); ``progress`` runs from 0 to 1 over training."""
        return {}

    def task_loss_weight(self, batch: Batch, progress: float) -> float:
        """Factor on the gold-label task loss of ``batch`` (distillation anneals it)."""
        return 1.0

    def scalars(self, task: str, progress: float) -> dict[str, float]:
        """Numbers to log beside the terms for a batch of ``task`` (e.g. an annealed weight)."""
        return {}

    def after_step(self, model: MultitaskModel) -> None:
        """Called after every optimizer step."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
