"""Every hook the platform calls, grouped by the stage at which it is called.

Hooks are called with keyword arguments; an implementation takes only the arguments it uses, so a
spec can grow without breaking plugins. Registration hooks receive a ``register`` callback: the host
validates names and types, and reports a duplicate name naming both plugins. Each hook has a
heading of its own in ``docs/hooks.md``, with a small example that ``tests/core/test_hooks.py`` runs.

One mechanism per extension point: a plugin *registers* components (task kinds, metrics, tasks,
samplers, regularizers, topologies, search spaces), whose settings (attrs classes) become command-line
options; it *reacts* to the training loop through the ``platform_on_…`` hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch

    from core.plugin.registry import Register, RegisterNamed
    from core.train.context import RunContext

PROJECT = "platform"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------------
# Registration: called once per run, when the registries are built (core.plugins.Registries).
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_register_task_kinds(register: RegisterNamed) -> None:
    """Register task kinds: ``register(kind)`` with an instance of a :class:`core.kinds.TaskKind`
    subclass (its ``name`` is what ``TaskSpec.kind`` names)."""


@hookspec
def platform_register_metrics(register: Register) -> None:
    """Register metrics: ``register(name, metric)`` where ``metric(predictions, gold)`` returns a float
    (higher is better); tasks list theirs in ``TaskSpec.metrics``."""


@hookspec
def platform_register_tasks(register: RegisterNamed) -> None:
    """Register tasks: ``register(task)`` with a :class:`core.tasks.TaskSpec` (``--tasks`` names it)."""


@hookspec
def platform_register_samplers(register: Register) -> None:
    """Register batch samplers: ``register(name, factory, config=SettingsClass, help=...)``, where
    ``factory`` is a :class:`core.sampling.SamplerFactory` returning a :class:`core.sampling.Sampler`."""


@hookspec
def platform_register_regularizers(register: Register) -> None:
    """Register loss regularizers: ``register(name, factory, config=SettingsClass, help=...)``, where
    ``factory(config, model)`` returns a :class:`core.regularizers.Regularizer`. Only an opt-in plugin
    may register one: it is active when the plugin is enabled (``--plugins``)."""


@hookspec
def platform_register_maskers(register: Register) -> None:
    """Register MLM maskers for ``platform pretrain``: ``register(name, factory, config=SettingsClass,
    help=...)``, where ``factory(config)`` returns a :class:`core.masking.Masker` (``static`` and
    ``select(ids, candidates, word_starts, rate, generator)``: the positions to predict)."""


@hookspec
def platform_register_topologies(register: Register) -> None:
    """Register head topologies: ``register(name, factory, config=SettingsClass, help=...)``, where
    ``factory(config, tasks, widths, dropout)`` returns an ``nn.ModuleDict`` with a head per task
    (``tasks``: the run's :class:`core.tasks.Task` list; ``widths``: :class:`core.heads.Widths`); a
    task's own or default head is ``task.build_head(widths, dropout)``."""


@hookspec
def platform_register_search_spaces(register: Register) -> None:
    """Register Optuna search spaces: ``register(name, space)`` where ``space(trial, base)`` returns a
    dict of configuration overrides suggested from the ``optuna.Trial`` for the base ``RunConfig``."""


# --------------------------------------------------------------------------------------------------
# Training loop: called by ``core.trainer`` in this order. ``run`` is the live
# :class:`core.trainer.RunContext` (config, model, optimizer, output folder, step counters, writer).
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_on_train_start(run: RunContext) -> None:
    """Called once before the first epoch (also after a resume)."""


@hookspec
def platform_on_epoch_start(run: RunContext, epoch: int) -> None:
    """Called at the start of every epoch (0-based)."""


@hookspec
def platform_on_before_backward(run: RunContext, task: str, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
    """Called with the total loss of a task batch before ``backward``; ``terms`` holds its named
    parts (``loss``, and ``<regularizer>/<term>`` for every regularizer term) as detached 0-dim tensors
    on the device: ``float()`` one only where you log it, since reading it waits for the device. A batch
    over ``--max-batch-tokens`` runs in chunks: then it is called once per chunk, with the chunk's loss
    and parts (means over the chunk's examples). Under torchrun each process sees its own shard."""


@hookspec
def platform_on_after_step(run: RunContext, step: int, losses: dict[str, torch.Tensor]) -> None:
    """Called after every planned step with the global step and the per-task losses of the step:
    0-dim tensors on the device, means over this process's examples (read them at log points only;
    :func:`platform_on_log` has them as floats over every process)."""


@hookspec
def platform_on_log(run: RunContext, step: int, losses: dict[str, float]) -> None:
    """Called every ``--log-every`` steps, on every process, with each task's mean training loss over
    the examples of every process since the previous call, as floats."""


@hookspec
def platform_on_evaluate_end(run: RunContext, split: str, metrics: dict[str, float]) -> None:
    """Called after an evaluation of ``split`` with its metrics (per task and ``mean``): the selection
    split every epoch (``dev``, or ``validation``), and with ``--validation-split`` ``dev`` once at the end."""


@hookspec
def platform_on_epoch_end(run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
    """Called at the end of every epoch with that epoch's metrics on the selection split
    (``run.selection_split``: dev, or validation with ``--validation-split``), after ``run.best`` took them
    in if they are the best so far, and before the epoch's checkpoints are written (so state a plugin
    changes here is saved with the epoch)."""


@hookspec
def platform_on_train_end(run: RunContext, metrics: dict[str, float]) -> None:
    """Called once after the last epoch with the best metrics of the selection split (with
    ``--validation-split``, ``run.dev`` then holds the chosen model's dev metrics)."""
