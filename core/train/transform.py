"""What a model transform is: a change to a run's freshly built model before anything trains or loads it.

An opt-in plugin (``PLATFORM_OPT_IN = True``) provides one as a component whose factory is
``factory(settings, model, config) -> None`` (:class:`ModelTransform`); it acts in every run that enables
the plugin, in the order of ``--plugins``. The builder of a run's parts (``core.build.parts.RunParts.model``)
calls it on the new model (the checkpoint's encoder, the topology's heads, on the CPU, seeded by ``--seed``)
before the model moves to its device, before torchrun's ``DistributedDataParallel`` wraps it, and before the
optimizer is built. So parameters a transform adds (adapters) move with the model and are trained; parameters
it freezes (``requires_grad_(False)``) are left out of the optimizer's groups and of DDP's gradient averaging.

The same call happens wherever a run's model is built: training, ``--resume``, a study's trials, and
``platform evaluate`` / ``predict`` (where the saved weights are loaded after it). A transform must therefore
build the same parameters (the same ``state_dict`` keys) every time for the same settings and tasks.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.model.multitask import MultitaskModel
from core.experiment.config import RunConfig


class ModelTransform(Protocol):
    """``factory(settings, model, config) -> None``: change ``model`` in place (add modules, freeze
    parameters); ``settings`` is an instance of the component's settings class (None when it has none),
    ``config`` the run's configuration."""

    def __call__(self, settings: Any, model: MultitaskModel, config: RunConfig) -> None: ...
