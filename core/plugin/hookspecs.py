"""Every hook the platform calls, grouped by the stage at which it is called.

Hooks are called with keyword arguments; an implementation takes only the arguments it uses, so a
spec can grow without breaking plugins. Each hook has a heading of its own in ``docs/hooks.md``.

One mechanism per extension point: a plugin *provides* components through the registration hooks, each
returning the plugin's :class:`~core.plugin.component.Component` s of one family (the host checks and
registers them; their settings classes become command-line options); it *reacts* to a run through the
``platform_on_…`` hooks, which a run's regularizers receive too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import pluggy

if TYPE_CHECKING:
    import torch

    from core.encoder.architecture import Architecture
    from core.model.topology import TopologyFactory
    from core.plugin.command import Command
    from core.plugin.component import Component, SearchSpace
    from core.pretrain.masking import MaskerFactory
    from core.tasks.kind import TaskKind
    from core.tasks.spec import Metric, TaskSpec
    from core.train.balancer import BalancerFactory
    from core.train.context import Run
    from core.train.regularizer import RegularizerFactory
    from core.train.sampling import SamplerFactory
    from core.train.transform import ModelTransform

PROJECT = "platform"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------------
# Registration: each called once when a command builds its registries (core.plugin.registries), one
# plugin at a time; each returns that plugin's components of one family.
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_task_kinds() -> Iterable[Component[TaskKind]]:
    """Task kinds: ``Component.of(kind)`` with an instance of a :class:`~core.tasks.kind.TaskKind`
    subclass (its ``name`` is what ``TaskSpec.kind`` names)."""


@hookspec
def platform_metrics() -> Iterable[Component[Metric]]:
    """Metrics: ``Component(name, metric)`` where ``metric(predictions, gold)`` returns a float (higher is
    better); tasks list theirs in ``TaskSpec.metrics``."""


@hookspec
def platform_tasks() -> Iterable[Component[TaskSpec]]:
    """Tasks: ``Component.of(spec)`` with a :class:`~core.tasks.spec.TaskSpec` (``--tasks`` names it);
    ``default=True`` for the tasks a run trains when ``--tasks`` is not given."""


@hookspec
def platform_samplers() -> Iterable[Component[SamplerFactory]]:
    """Batch samplers: ``Component(name, factory, settings=..., space=...)`` where ``factory`` is a
    :class:`~core.train.sampling.SamplerFactory`; one of them is the ``default``."""


@hookspec
def platform_regularizers() -> Iterable[Component[RegularizerFactory]]:
    """Loss regularizers: ``Component(name, factory, settings=...)`` where ``factory(settings, model)``
    returns a :class:`~core.train.regularizer.Regularizer`. Only an opt-in plugin may provide one: it acts
    in every run that enables the plugin (``--plugins``)."""


@hookspec
def platform_model_transforms() -> Iterable[Component[ModelTransform]]:
    """Model transforms: ``Component(name, factory, settings=...)`` where ``factory(settings, model, config)``
    changes a run's new model in place (adds adapters, freezes parameters) before it moves to its device and
    before the optimizer is built (:class:`~core.train.transform.ModelTransform`). Only an opt-in plugin may
    provide one: it acts in every run that enables the plugin, also where ``evaluate``/``predict`` rebuild it."""


@hookspec
def platform_topologies() -> Iterable[Component[TopologyFactory]]:
    """Head topologies: ``Component(name, factory, settings=...)`` where ``factory(settings, tasks, widths,
    dropout)`` returns an ``nn.ModuleDict`` with a head per task (:class:`~core.model.topology.TopologyFactory`);
    the ``default`` one serves runs whose enabled plugins bring none."""


@hookspec
def platform_balancers() -> Iterable[Component[BalancerFactory]]:
    """Balancers, how a summed step's task losses become one update: ``Component(name, factory, settings=...)``
    where ``factory(settings, tasks, seed)`` returns a :class:`~core.train.balancer.Balancer`
    (:class:`~core.train.balancer.BalancerFactory`); the ``default`` one (equal weighting) serves runs whose
    enabled plugins bring none. A balancer receives the loop hooks as a plugin does; its state resumes."""


@hookspec
def platform_maskers() -> Iterable[Component[MaskerFactory]]:
    """MLM maskers of ``platform pretrain``: ``Component(name, factory, settings=...)`` where
    ``factory(settings)`` returns a :class:`~core.pretrain.masking.Masker`; one is the ``default``."""


@hookspec
def platform_search_spaces() -> Iterable[Component[SearchSpace]]:
    """Optuna search spaces over the run's own settings: ``Component(name, space)`` where ``space(trial,
    base)`` returns a dict of :class:`~core.experiment.config.RunConfig` fields suggested from the trial for the
    base configuration. A component's own settings are searched by its ``space`` instead."""


@hookspec
def platform_encoders() -> Iterable[Component[Architecture]]:
    """Encoder architectures: ``Component(model_type, Architecture(config, model, ...))`` where ``model_type`` is
    what a checkpoint's ``config.json`` says (``"roberta"``); ``--checkpoint`` reads a folder of it with its
    config, weights and tokenizer (:class:`~core.encoder.architecture.Architecture`)."""


@hookspec
def platform_commands() -> Iterable[Component[Command]]:
    """Subcommands of ``platform``: ``Component(name, Command(run, ...), settings=...)``; the settings
    class's fields are the command's options (see :class:`~core.plugin.command.Command`)."""


# --------------------------------------------------------------------------------------------------
# A run: called by the training loop (``core.train.loop``) in this order, and by ``platform pretrain``
# (``core.pretrain.loop``) where said. ``run`` is the live :class:`core.train.context.Run`: a
# ``TrainingRun`` (config, tasks' data, model, optimizer, step counters, writer) or a ``PretrainingRun``.
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_on_train_start(run: Run) -> None:
    """Called once before the first epoch (also after a resume)."""


@hookspec
def platform_on_epoch_start(run: Run, epoch: int) -> None:
    """Called at the start of every epoch (0-based)."""


@hookspec
def platform_on_before_backward(run: Run, task: str, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
    """Called with the total loss of a task batch before ``backward``; ``terms`` holds its named
    parts (``loss``, and ``<regularizer>/<term>`` for every regularizer term) as detached 0-dim tensors
    on the device: ``float()`` one only where you log it, since reading it waits for the device. A batch
    over ``--max-batch-tokens`` runs in chunks: then it is called once per chunk, with the chunk's loss
    and parts (means over the chunk's examples). Under torchrun each process sees its own shard."""


@hookspec
def platform_on_after_optimizer_step(run: Run) -> None:
    """Called after every optimizer step (one per task batch with ``--update sequential``, one per planned
    step with ``summed``; also in ``platform pretrain``), before the next forward: where a moving average
    of the weights is updated."""


@hookspec
def platform_on_after_step(run: Run, step: int, losses: dict[str, torch.Tensor]) -> None:
    """Called after every planned step with the global step and the per-task losses of the step:
    0-dim tensors on the device, means over this process's examples (read them at log points only;
    :func:`platform_on_log` has them as floats over every process)."""


@hookspec
def platform_on_log(run: Run, step: int, losses: dict[str, float]) -> None:
    """Called every ``--log-every`` steps, on every process, with each task's mean training loss over
    the examples of every process since the previous call, as floats."""


@hookspec
def platform_on_evaluate_end(run: Run, split: str, metrics: dict[str, float]) -> None:
    """Called after an evaluation of ``split`` with its metrics (per task and ``mean``): the selection
    split every epoch (``dev``, or ``validation``), and with ``--validation-split`` ``dev`` once at the end."""


@hookspec
def platform_on_epoch_end(run: Run, epoch: int, metrics: dict[str, float]) -> None:
    """Called at the end of every epoch with that epoch's metrics on the selection split
    (``run.selection_split``: dev, or validation with ``--validation-split``), after ``run.best`` took them
    in if they are the best so far, and before the epoch's checkpoints are written (so state a plugin
    changes here is saved with the epoch)."""


@hookspec
def platform_on_train_end(run: Run, metrics: dict[str, float]) -> None:
    """Called once after the last epoch with the best metrics of the selection split (with
    ``--validation-split``, ``run.dev`` then holds the chosen model's dev metrics)."""
