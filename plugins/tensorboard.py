"""TensorBoard telemetry: per-task training loss, learning rate, examples/s and dev metrics.

Events go under ``<run>/tensorboard``; other plugins write their own scalars through ``run.writer``
under their own prefix (``smart/…``), so each plugin's telemetry stays apart. Training losses are
the means over every process's examples since the previous log point (``platform_on_log``); under
torchrun only the main process writes.
"""

from __future__ import annotations

import time

from core.hookspecs import hookimpl

NAME = "tensorboard"


@hookimpl
def platform_on_train_start(run):
    run.plugin_state[NAME] = {"time": time.perf_counter(), "examples": run.examples_seen}


@hookimpl
def platform_on_log(run, step, losses):
    for task, value in losses.items():
        run.writer.add_scalar(f"train/loss/{task}", value, step)
    run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], step)
    state = run.plugin_state[NAME]
    now = time.perf_counter()
    run.writer.add_scalar("train/examples_per_second", (run.examples_seen - state["examples"]) / (now - state["time"]), step)
    state.update(time=now, examples=run.examples_seen)


@hookimpl
def platform_on_evaluate_end(run, split, metrics):
    for name, value in metrics.items():
        run.writer.add_scalar(f"{split}/{name}", value, run.global_step)
    run.writer.flush()
