"""Every hook the platform calls, grouped by the stage at which it is called.

Hooks are called with keyword arguments; an implementation takes only the arguments it uses, so a
spec can grow without breaking plugins. Registration hooks receive a ``register`` callback: the host
validates names and types, and reports a duplicate name naming both plugins. Each hook has a
heading of its own in ``docs/hooks.md``.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import pluggy

PROJECT = "platform"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------------
# Registration: called once per run, when the registries are built.
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_register_tasks(register: Callable[..., None]) -> None:
    """Register tasks: call ``register(task)`` with a :class:`core.tasks.TaskSpec` for each one."""


@hookspec
def platform_register_samplers(register: Callable[..., None]) -> None:
    """Register batch samplers: ``register(name, factory, config=ConfigClass, help=...)``.

    ``factory(config, sizes, batch_size, seed, epochs)`` returns an object with ``plan(epoch)``,
    ``steps_per_epoch()``, ``state_dict()`` and ``load_state_dict()`` (see ``core.sampling``)."""


@hookspec
def platform_register_regularizers(register: Callable[..., None]) -> None:
    """Register loss regularizers: ``register(name, factory, config=ConfigClass, help=...)``.

    ``factory(config, model)`` returns a :class:`core.regularizers.Regularizer`."""


@hookspec
def platform_register_topologies(register: Callable[..., None]) -> None:
    """Register head topologies: ``register(name, factory, config=ConfigClass, help=...)``.

    ``factory(config, tasks, hidden_size, dropout)`` returns an ``nn.ModuleDict`` of task heads."""


@hookspec
def platform_register_maskers(register: Callable[..., None]) -> None:
    """Register MLM maskers for ``platform pretrain``: ``register(name, factory, config=ConfigClass, help=...)``.

    ``factory(config)`` returns an object with ``static`` (bool) and ``select(ids, candidates,
    word_starts, rate, generator)``, the positions to predict (see ``core.masking``)."""


@hookspec
def platform_register_search_spaces(register: Callable[..., None]) -> None:
    """Register Optuna search spaces: ``register(name, space)`` where ``space(trial, base)`` returns
    a dict of configuration overrides suggested from ``trial``."""


# --------------------------------------------------------------------------------------------------
# Command line: called when ``platform`` builds its parser.
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_add_cli_options(command: str, parser: argparse.ArgumentParser) -> None:
    """Add options to the parser of ``platform COMMAND`` (``run``, ``evaluate``, ...)."""


# --------------------------------------------------------------------------------------------------
# Training loop: called by ``core.trainer`` in this order. ``run`` is the live
# :class:`core.trainer.RunContext` (config, model, optimizer, output folder, step counters, writer).
# --------------------------------------------------------------------------------------------------


@hookspec
def platform_on_train_start(run: Any) -> None:
    """Called once before the first epoch (also after a resume)."""


@hookspec
def platform_on_epoch_start(run: Any, epoch: int) -> None:
    """Called at the start of every epoch (0-based)."""


@hookspec
def platform_on_before_backward(run: Any, task: str, loss: Any, terms: dict[str, float]) -> None:
    """Called with the total loss of a task batch before ``backward``; ``terms`` holds its named
    parts (``loss``, and one entry per regularizer term) as floats. A batch over ``--max-batch-tokens``
    runs in chunks: then it is called once per chunk, with the chunk's loss and parts (means over the
    chunk's examples)."""


@hookspec
def platform_on_after_step(run: Any, step: int, losses: dict[str, float]) -> None:
    """Called after every optimizer step with the global step and the per-task losses of the step."""


@hookspec
def platform_on_evaluate_end(run: Any, split: str, metrics: dict[str, float]) -> None:
    """Called after an evaluation of ``split`` with its metrics (per task and ``mean``)."""


@hookspec
def platform_on_epoch_end(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    """Called at the end of every epoch with that epoch's dev metrics."""


@hookspec
def platform_on_train_end(run: Any, metrics: dict[str, float]) -> None:
    """Called once after the last epoch with the best dev metrics."""
