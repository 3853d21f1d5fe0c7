"""What a study maximizes, how a trial trains, and how it is pruned.

A trial trains through exactly the code path of ``platform run`` (``core.trainer.prepare`` and
``train``); the only addition is :class:`PruningPlugin`, registered on the run's plugin manager,
which reports every epoch's objective value to Optuna and stops the run when the pruner says so.

Under torchrun the main process holds the Optuna trial: it sends each trial's configuration to the
other processes (:func:`follow`), which train it with it, and tells them when the pruner stops it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal

import attrs
import optuna

from core.base import distributed
from core.base.errors import ConfigError
from core.base.settings import parse_assignments
from core.build.run import prepare
from core.plugin.hookspecs import hookimpl
from core.experiment.config import RunConfig
from core.train.context import TrainingRun
from core.train.loop import train
from studies.settings import PRUNERS
from studies.space import ActiveSpace, Rule, SpaceTrial, trial_config


@attrs.frozen
class Objective:
    """``mean`` (the dev mean), ``weighted`` (a weighted mean of task scores) or ``pareto`` (one
    objective per task); every direction is maximize."""

    kind: str
    tasks: tuple[str, ...]
    weights: dict[str, float] = attrs.Factory(dict)

    @property
    def spec(self) -> str:
        if self.kind == "weighted":
            return "weighted:" + ",".join(f"{task}={weight:g}" for task, weight in self.weights.items())
        return f"pareto:{','.join(self.tasks)}" if self.kind == "pareto" else "mean"

    @property
    def multi(self) -> bool:
        return self.kind == "pareto"

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        return ["maximize"] * (len(self.tasks) if self.multi else 1)

    @property
    def metric_names(self) -> list[str]:
        return list(self.tasks) if self.multi else [self.kind]

    def value(self, metrics: dict[str, float]) -> float:
        """The single objective of a dev evaluation (``mean`` and ``weighted``)."""
        if self.kind == "weighted":
            return sum(weight * metrics[task] for task, weight in self.weights.items()) / sum(self.weights.values())
        return metrics["mean"]

    def values(self, metrics: dict[str, float]) -> float | list[float]:
        """What the trial returns to Optuna: one value, or one per task for ``pareto``."""
        return [metrics[task] for task in self.tasks] if self.multi else self.value(metrics)


def parse_objective(text: str, tasks: tuple[str, ...]) -> Objective:
    """``mean``, ``pareto`` or ``weighted:sst=1,sts=2`` (tasks of the base configuration, weights >= 0)."""
    kind, _, rest = text.partition(":")
    if text in ("mean", "pareto"):
        return Objective(text, tuple(tasks))
    if kind != "weighted" or not rest:
        raise ConfigError(f"--objective: unknown objective {text!r}; choose mean, pareto, or weighted:TASK=W,... "
                         "(e.g. weighted:sst=1,sts=2)")
    expected = "TASK=WEIGHT with WEIGHT >= 0, e.g. sst=1"
    weights: dict[str, float] = {}
    for task, number in parse_assignments(rest, "--objective", expected).items():
        try:
            weight = float(number)
        except ValueError:
            weight = -1.0
        if weight < 0:
            raise ConfigError(f"--objective: bad entry {task + '=' + number!r}; expected {expected}")
        if task not in tasks:
            raise ConfigError(f"--objective: task {task!r} is not among the tasks of the study ({', '.join(tasks)})")
        weights[task] = weight
    if not sum(weights.values()) > 0:
        raise ConfigError(f"--objective: the weights of {text!r} sum to zero; give at least one positive weight")
    return Objective("weighted", tuple(tasks), weights)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """``median``: stop a trial whose epoch score is below the median of earlier trials at that epoch
    (after 5 trials, from the second epoch on); ``hyperband``: successive halving over epochs;
    ``none``: never prune. Steps are epochs completed (1 after the first), Optuna's resource count."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner: unknown pruner {name!r}; choose {', '.join(PRUNERS)}")


class PruningPlugin:
    """Reports each epoch's objective value to the trial, at step = epochs completed (the resource
    Optuna's pruners count: Hyperband's first rung, min_resource 1, comes after the first epoch), and
    prunes the run when the pruner says so. Under torchrun only the main process holds the trial
    (``trial`` is None on the others); its decision reaches every process."""

    def __init__(self, trial: optuna.Trial | None, objective: Objective):
        self.trial, self.objective = trial, objective

    @hookimpl(trylast=True)
    def platform_on_epoch_end(self, run: TrainingRun, epoch: int, metrics: dict[str, float]) -> None:
        reason = None
        if self.trial is not None:
            value = self.objective.value(metrics)
            self.trial.report(value, epoch + 1)
            if self.trial.should_prune():
                reason = f"pruned after epoch {epoch + 1} of {run.config.epochs}: {self.objective.spec} {value:.4f}"
                self.trial.set_user_attr("reason", reason)
        reason = distributed.broadcast_object(reason)
        if reason is not None:
            raise optuna.TrialPruned(reason)


@attrs.frozen
class TrialRunner:
    """The function Optuna calls for each trial: configure, train in ``<folder>/trial-<number>``,
    record ``run_dir``, the best ``metrics`` of the selection split and its name (``selected_on``:
    ``dev``, or ``validation`` with ``--validation-split``, when the chosen model's ``dev_metrics`` are
    recorded too) as user attributes, return the objective value(s), which come from the selection split.

    ``plugin_manager(config)`` builds the manager of a run, exactly as ``platform run`` does."""

    base: RunConfig
    spaces: list[ActiveSpace]
    rules: dict[str, Rule]
    objective: Objective
    folder: Path
    plugin_manager: Callable[[RunConfig], Any]

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        output_dir = self.folder / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(output_dir))
        config = None
        try:
            try:
                config = trial_config(self.base, self.spaces, SpaceTrial(trial, self.rules), output_dir)
            finally:
                distributed.broadcast_object(config or False)  # the other processes train it too (or skip it)
            best = self.train(config, trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        return self.objective.values(best)

    def train(self, config: RunConfig, trial: optuna.Trial | None) -> dict[str, float]:
        """Train one trial's configuration; ``trial`` is None on every process but the main one."""
        pm = self.plugin_manager(config)
        if not self.objective.multi:  # Optuna does not prune multi-objective studies
            pm.register(PruningPlugin(trial, self.objective), name="optuna-pruning")
        run = prepare(config, pm)
        try:
            return train(run)
        finally:
            if run.best and trial is not None:
                trial.set_user_attr("metrics", dict(run.best))
                trial.set_user_attr("selected_on", run.selection_split)
                if run.dev:
                    trial.set_user_attr("dev_metrics", dict(run.dev))
            run.close()


def follow(runner: TrialRunner) -> None:
    """What the processes but the main one do under torchrun: train each configuration the main
    process sends, until it sends None. The main process records every trial's fate."""
    while (config := distributed.broadcast_object(None)) is not None:
        if config is False:  # the trial failed before training
            continue
        try:
            runner.train(config, None)
        except optuna.TrialPruned:
            pass
        except Exception as error:  # the main process failed the same way and records it
            logging.getLogger("platform").warning("trial in %s failed: %s: %s", config.output_dir,
                                                  type(error).__name__, error)
