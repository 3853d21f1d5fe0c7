"""What a regularizer is: extra loss terms for every task batch, plus state that resumes with the run.

An opt-in plugin (``PLATFORM_OPT_IN = True``) provides a regularizer as a component whose factory is
``factory(settings, model) -> Regularizer`` (:class:`RegularizerFactory`); it acts in every run that
enables the plugin. Per task batch the loop multiplies the gold-label task loss by
:meth:`~Regularizer.task_loss_weight` and adds the :meth:`~Regularizer.terms`, before ``backward``.

A regularizer reacts to the training loop exactly as a plugin does: the run registers it with its plugin
manager, so any ``platform_on_…`` hook it implements (methods marked ``@hookimpl``) is called with the
plugins' ones, e.g. ``platform_on_train_start(run)`` to prepare teachers or
``platform_on_after_optimizer_step(run)`` to update an average. Its terms reach the telemetry plugin
through ``platform_on_before_backward`` and are logged as ``<name>/<task>/<term>``; other numbers it
writes itself through ``run.writer``. Its :meth:`~Regularizer.state_dict` is saved in ``last.pt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch

from core.data.batch import Batch

if TYPE_CHECKING:
    from core.model.multitask import MultitaskModel


class Regularizer:
    """Base class: override :meth:`terms`; the rest has sensible no-op defaults."""

    def terms(self, model: MultitaskModel, batch: Batch, output: torch.Tensor,
              forward: Callable[[], torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        """Named loss terms (already weighted) to add to the task loss.

        ``output`` is the head output of ``batch``; ``forward()`` computes it again (under
        :func:`core.model.multitask.perturbed_embeddings`, say); ``progress`` runs from 0 to 1 over training."""
        return {}

    def task_loss_weight(self, batch: Batch, progress: float) -> float:
        """Factor on the gold-label task loss of ``batch`` (distillation anneals it)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class RegularizerFactory(Protocol):
    """What a regularizer component's factory is: ``factory(settings, model) -> Regularizer``, with
    ``settings`` an instance of the component's settings class (None when it has none)."""

    def __call__(self, settings: Any, model: MultitaskModel) -> Regularizer: ...
