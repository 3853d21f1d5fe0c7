"""What a run writes into its folder and reads back: ``last.pt`` (resume), ``best.pt`` and the best
model's predictions, ``metrics.json``.

Within an epoch's end they are written in an order that a process killed between two files cannot
leave contradicting itself for long: ``last.pt`` (which records the best epoch), then, for a new
best, its predictions of the selection split and ``best.pt``, then ``metrics.json``. A resume finds
``best.pt`` behind ``last.pt`` at most, and writes it again with its predictions
(:func:`save_best_if_behind`); ``platform evaluate`` says so when ``metrics.json`` is behind
``best.pt``. Under torchrun only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from core.base import distributed
from core.base import files as checkpoints
from core.base.errors import PlatformError
from core.experiment.config import load_data
from core.tasks.splits import SplitData
from core.train.evaluation import evaluate, predict_split, write_predictions

if TYPE_CHECKING:
    from core.train.context import TrainingRun

log = logging.getLogger("platform")


def state_of(run: TrainingRun) -> dict[str, Any]:
    """Everything a resume needs. Under torchrun every process must call it (it gathers each one's
    random generators into ``rng_per_process``; ``rng`` is the main process's)."""
    rngs = distributed.all_gather_objects(checkpoints.rng_state())
    return {
        "config": run.config.to_dict(), "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "sampler": run.sampler.state_dict(),
        "regularizers": {name: r.state_dict() for name, r in run.regularizers.items()},
        "balancer": run.balancer.state_dict(),
        "rng": rngs[0], **({"rng_per_process": rngs} if len(rngs) > 1 else {}), "epoch": run.epoch,
        "step_in_epoch": run.step_in_epoch, "global_step": run.global_step, "examples_seen": run.examples_seen,
        "history": run.history, "best": run.best,
    }


def save_last(run: TrainingRun) -> None:
    """``last.pt``, written by the main process (every process takes part in :func:`state_of`); never of a
    model whose weights are no longer finite (the run stops instead, keeping the last good one)."""
    check_finite_weights(run)
    state = state_of(run)
    if distributed.is_main():
        run.folder.save("last.pt", state)
    run.saved_step = run.global_step


class NonFiniteError(PlatformError):
    """Training diverged: a loss or a weight is no longer a finite number."""


def _epoch_of_step(run: TrainingRun) -> int:
    """The 1-based epoch of the step just taken (an epoch's last step has already moved ``run.epoch`` on)."""
    return run.epoch if run.step_in_epoch == 0 and run.global_step else run.epoch + 1


def check_finite_losses(run: TrainingRun, losses: dict[str, float]) -> None:
    """Stop a run whose training loss went non-finite, naming the step and the task."""
    bad = {task: value for task, value in losses.items() if not math.isfinite(value)}
    if bad:
        task, value = next(iter(bad.items()))
        raise NonFiniteError(f"training stopped at step {run.global_step} (epoch {_epoch_of_step(run)}): the training loss "
                             f"of task {task} is {value}; {_kept(run)}; lower --lr (or --loss-weights)")


def check_finite_weights(run: TrainingRun) -> None:
    """Stop a run whose weights went non-finite before they are saved, naming the step."""
    finite = torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()
    if not bool(finite):
        raise NonFiniteError(f"training stopped at step {run.global_step} (epoch {_epoch_of_step(run)}): the model's weights "
                             f"are no longer finite numbers; {_kept(run)}; lower --lr (or --loss-weights)")


def _kept(run: TrainingRun) -> str:
    if run.saved_step is None:
        return f"nothing was saved in {run.output_dir} yet"
    return f"{run.output_dir / 'last.pt'} keeps step {run.saved_step}, the last one saved"


def restore(run: TrainingRun, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["sampler"])
    for name, regularizer in run.regularizers.items():
        regularizer.load_state_dict(state["regularizers"].get(name, {}))
    run.balancer.load_state_dict(state.get("balancer", {}))
    me, per_process = distributed.world(), state.get("rng_per_process", [state["rng"]])
    checkpoints.set_rng_state(per_process[me.rank] if len(per_process) == me.size else state["rng"])
    if len(per_process) != me.size:  # another number of processes: fresh streams, the same batches
        distributed.seed(run.config.seed + state["global_step"])
    for key in ("epoch", "step_in_epoch", "global_step", "examples_seen", "history", "best"):
        setattr(run, key, state[key])
    run.saved_step = run.global_step
    log.info("resumed %s at epoch %d, step %d", run.output_dir, run.epoch, run.step_in_epoch)


def save_best(run: TrainingRun, predictions: dict) -> None:
    """The selection split's predictions of the model in hand (the best one), then ``best.pt`` from it:
    a ``best.pt`` that records the best epoch comes with that epoch's predictions. Written by the main
    process."""
    if not distributed.is_main():
        return
    write_split_predictions(run, run.selection_split, run.selection_data, predictions)
    run.folder.save("best.pt", {"config": run.config.to_dict(), "model": run.model.state_dict(),
                                                   "metrics": run.best, "selected_on": run.selection_split})


def save_best_if_behind(run: TrainingRun) -> None:
    """After a restore: when the process died after ``last.pt`` recorded a new best epoch but before
    ``best.pt`` was written, the restored model is that best one; write ``best.pt`` (and its dev
    predictions) from it, so the folder agrees with itself again."""
    if not distributed.on_main(best_is_behind, run):
        return
    _, predictions = evaluate(run.model, run.selection_data, run.tokenizer.pad, run.config.eval_batch_size)
    save_best(run, predictions)


def best_is_behind(run: TrainingRun) -> bool:
    """Whether ``best.pt`` holds an older epoch than the best one ``last.pt`` records (see
    :func:`save_best_if_behind`); a folder changed by hand is refused."""
    best_file = run.output_dir / "best.pt"
    saved_epoch = checkpoints.load(best_file)["metrics"].get("epoch") if best_file.exists() else None
    if not run.best or saved_epoch == run.best["epoch"]:
        return False
    if run.best["epoch"] != run.epoch - 1 or run.step_in_epoch != 0:
        raise checkpoints.CheckpointFileError(
            f"{best_file} holds epoch {saved_epoch}, but {run.output_dir / 'last.pt'} records epoch {run.best['epoch']} "
            "as best and no longer holds that model; the folder was changed by hand")
    log.warning("%s was behind last.pt (epoch %s instead of %d): writing it again", best_file, saved_epoch,
                run.best["epoch"])
    return True


def write_metrics(run: TrainingRun) -> None:
    if not distributed.is_main():
        return
    record = {"selected_on": run.selection_split, "best": run.best, "history": run.history,
              "examples_seen": run.examples_seen, **({"dev": run.dev} if run.dev else {})}
    run.folder.write("metrics.json", json.dumps(record, indent=2) + "\n")


def write_split_predictions(run: TrainingRun, split: str, data: dict[str, SplitData], predictions: dict) -> None:
    if not distributed.is_main():
        return
    for name, split_data in data.items():
        write_predictions(run.output_dir / "predictions" / f"{name}-{split}-output.csv", split_data, predictions[name])


def write_test_predictions(run: TrainingRun) -> None:
    """Test-file predictions of the best model, which :func:`finish` put in hand."""
    with distributed.local_main_first():
        test = load_data(run.config, run.model.tasks, run.tokenizer, "test")
    write_split_predictions(run, "test", test, {name: predict_split(run.model, data, run.tokenizer.pad,
                                                                    run.config.eval_batch_size)
                                                for name, data in test.items()})
