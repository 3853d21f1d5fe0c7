"""TensorBoard telemetry: per-task training loss, learning rate, examples/s, every regularizer's terms,
and evaluation metrics; in ``platform pretrain`` too (its MLM loss, learning rate and held-out figures).

Events go under ``<run>/tensorboard``, every ``--log-every`` steps; under torchrun only the main
process writes. Training losses are the means over every process's examples since the previous log
point (``platform_on_log``). A regularizer's terms are logged as ``<regularizer>/<task>/<term>``
(``smart/sst/adversarial``) at the log point's batches; plugins and regularizers write numbers of their
own through ``run.writer`` under their own prefix (``bam/sst/teacher_weight``). With a balancer other than
equal weighting, each task's weight at the log point's step (``balance/weight/<task>``) and, for a
gradient-based one, the cosine between two tasks' gradients of the shared parameters
(``balance/cosine/<task>-<task>``: below 0, the tasks conflict).
"""

from __future__ import annotations

import time

import torch

from core.api import Run, hookimpl

NAME = "tensorboard"


@hookimpl
def platform_on_train_start(run: Run) -> None:
    run.plugin_state[NAME] = {"time": time.perf_counter(), "examples": run.examples_seen}


def logged(run: Run, step: int) -> bool:
    return step % run.config.log_every == 0


@hookimpl
def platform_on_before_backward(run: Run, task: str, terms: dict[str, torch.Tensor]) -> None:
    step = run.global_step + 1  # the step being taken: train/loss/<task> is logged under the same number
    if not logged(run, step):
        return
    for key, value in terms.items():
        regularizer, _, term = key.partition("/")
        if term:
            run.writer.add_scalar(f"{regularizer}/{task}/{term}", value, step)


@hookimpl
def platform_on_log(run: Run, step: int, losses: dict[str, float]) -> None:
    for task, value in losses.items():
        run.writer.add_scalar(f"train/loss/{task}", value, step)
    run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], step)
    state = run.plugin_state[NAME]
    now = time.perf_counter()
    run.writer.add_scalar("train/examples_per_second", (run.examples_seen - state["examples"]) / (now - state["time"]), step)
    state.update(time=now, examples=run.examples_seen)
    for task, weight in getattr(run, "step_weights", {}).items():  # a balancer's, at the log point's step
        run.writer.add_scalar(f"balance/weight/{task}", float(weight), step)
    for (first, second), cosine in getattr(run, "gradient_cosines", {}).items():
        run.writer.add_scalar(f"balance/cosine/{first}-{second}", float(cosine), step)


@hookimpl
def platform_on_evaluate_end(run: Run, split: str, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        run.writer.add_scalar(f"{split}/{name}", value, run.global_step)
    run.writer.flush()
