"""The multitask training loop: plan steps with a sampler, update, evaluate, checkpoint, resume.

Loop hooks (``platform_on_…``) fire in the order documented in ``core/hookspecs.py``. A run folder
holds ``config.json``, ``metrics.json``, ``last.pt`` (resume), ``best.pt`` (best mean on the selection
split), ``predictions/`` and TensorBoard events under ``tensorboard/``; :mod:`core.runfiles` writes
and reads them.

The selection split is dev, or, with ``--validation-split``, the rows held out of the train files: then
every epoch is evaluated on them, ``best.pt`` is chosen on them, and dev is evaluated once, on the
chosen model, after the last epoch (``metrics.json``: ``"selected_on"`` and ``"dev"``).

Under torchrun (see ``core.distributed``) every process runs this same loop on its shard of every task
batch; only the main process reads and writes the run folder, and what it reads reaches the others.
Losses stay on the device between log points (``--log-every``): the loop never waits for the device
inside a step.
"""

from __future__ import annotations

import contextlib
import logging
import time
import torch
from tqdm.auto import tqdm

from core.base import distributed
from core.base.memory import peak_rss_mb
from core.tasks.splits import make_batch
from core.train import checkpointing as runfiles
from core.train.bucketing import bucket_plan, split_by_tokens
from core.train.context import TrainingRun
from core.train.evaluation import evaluate
from core.train.gradients import cosines, put_gradient, scale_gradient, take_gradient

log = logging.getLogger("platform")


def chunk_loss(run: TrainingRun, task: str, indices: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward examples ``indices`` of ``task``: their total loss (task loss + regularizer terms, each a
    mean over the examples) and its parts, detached, on the device (reading one waits for the device).
    Under torchrun the forward goes through ``DistributedDataParallel``, whose backward averages the
    gradients; a regularizer's extra forwards use the model itself and add to the same backward."""
    batch = make_batch(run.train_data[task], indices, run.tokenizer.pad).to(run.model.device)
    output = (run.ddp or run.model)(batch)
    total = run.model.tasks[task].loss(output, batch)
    terms = {"loss": total.detach()}  # logged unweighted, comparable across --loss-weights
    total = total * run.loss_weights[task]
    for regularizer in run.regularizers.values():
        total = total * regularizer.task_loss_weight(batch, run.progress)

    def forward():
        return run.model(batch)

    for name, regularizer in run.regularizers.items():
        for term, value in regularizer.terms(run.model, batch, output, forward, run.progress).items():
            total = total + value
            terms[f"{name}/{term}"] = value.detach()
    if task in run.step_weights:  # a loss-based balancer's factor on the task's whole objective
        total = total * run.step_weights[task]
    return total, terms


def task_step(run: TrainingRun, task: str, indices: list[int]) -> dict[str, torch.Tensor]:
    """Forward and backward of one task batch, accumulating its gradient; returns its loss parts (means
    over this process's examples, on the device).

    A batch of more padded tokens than ``--max-batch-tokens`` runs in chunks, each chunk's loss
    weighted by its share of the examples: the losses are means over examples, so the gradient is the
    whole batch's, and only one chunk's activations are alive at a time. Under torchrun each of the N
    processes takes its shard of the batch (:func:`core.distributed.shard`) and weights a chunk by N
    times its share of the whole batch: DDP's mean over the processes is then the whole batch's
    gradient, shards of unequal size included. Only the last chunk's backward averages (the others
    accumulate under ``no_sync``), so every process averages once per task batch, however many chunks
    its shard takes. A process whose shard is empty (a batch of fewer examples than processes) runs one
    example at weight 0, so that it joins the average too."""
    data, processes = run.train_data[task], distributed.world().size
    mine = distributed.shard(indices)
    if not mine:
        total, _ = chunk_loss(run, task, indices[:1])
        (total * 0.0).backward()
        return {"loss": torch.zeros((), device=run.model.device)}
    parts: dict[str, torch.Tensor] = {}
    chunks = split_by_tokens(mine, data.lengths, len(data.sequences), run.config.max_batch_tokens)
    for number, chunk in enumerate(chunks, 1):
        share = len(chunk) * processes / len(indices)
        with run.ddp.no_sync() if run.ddp is not None and number < len(chunks) else contextlib.nullcontext():
            total, terms = chunk_loss(run, task, chunk)
            run.pm.hook.platform_on_before_backward(run=run, task=task, loss=total, terms=terms)
            (total * share).backward()  # share 1.0 for a batch within the budget in one process: exact
        for name, value in terms.items():
            parts[name] = parts.get(name, 0.0) + value * (len(chunk) / len(mine))
    return parts


def optimizer_step(run: TrainingRun) -> None:
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.pm.hook.platform_on_after_optimizer_step(run=run)


def train_step(run: TrainingRun, step: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """One planned step: a batch of one or more tasks, each updated on its own (``sequential``) or
    all in one update (``summed``), which the run's balancer makes of the tasks' losses (the default:
    their sum, gradients accumulating over tasks). Returns each task's loss on this process's examples,
    on the device; adds it to the log tally."""
    balancer, summed = run.balancer, run.config.update == "summed"
    tasks = [task for task, _ in step]
    if summed:
        run.step_weights = balancer.weights(tasks, run.global_step)
    losses: dict[str, torch.Tensor] = {}
    rows: list[torch.Tensor] = []
    for task, indices in step:
        losses[task] = task_step(run, task, indices)["loss"]
        if summed and balancer.gradients:
            rows.append(take_gradient(run.parameter_split.shared))
        if not summed:
            optimizer_step(run)
        run.examples_seen += len(indices)
        tally = losses[task].detach() * len(distributed.shard(indices))
        run.loss_sums[task] = run.loss_sums[task] + tally if task in run.loss_sums else tally
        run.loss_counts[task] = run.loss_counts.get(task, 0) + len(indices)
    if summed:
        observed = step_losses(run, step, losses) if balancer.observes_losses or balancer.gradients else {}
        if balancer.gradients:
            aggregate(run, tasks, torch.stack(rows), observed)
        optimizer_step(run)
        if balancer.observes_losses:
            balancer.update(observed, run.global_step)
    return losses


def aggregate(run: TrainingRun, tasks: list[str], grads: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
    """A gradient-based balancer's step: the direction it makes of the tasks' gradients (rows of ``grads``)
    becomes the shared parameters' gradient; each task's own head keeps its gradient, times the factor the
    balancer gives it, if any. Records the weights and the gradients' cosines for telemetry."""
    split = run.parameter_split
    made = run.balancer.aggregate(grads, torch.stack([losses[task] for task in tasks]).float(), tasks,
                                  run.global_step)
    put_gradient(split.shared, made.direction)
    if made.head_factors is not None:
        for task, factor in zip(tasks, made.head_factors):
            scale_gradient(split.owned.get(task, []), factor)
    weights = made.weights if made.weights is not None else made.head_factors
    run.step_weights = dict(zip(tasks, weights.detach())) if weights is not None else {}
    similarity = cosines(grads)
    run.gradient_cosines = {(a, b): similarity[i, j].detach() for i, a in enumerate(tasks)
                            for j, b in enumerate(tasks) if i < j}


def step_losses(run: TrainingRun, step: list[tuple[str, list[int]]],
                losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each task's loss on the step's whole batch: the mean over every process's examples (one all-reduce
    under torchrun), detached, so that every process feeds its balancer the same numbers."""
    if distributed.world().size == 1:
        return {task: losses[task].detach() for task, _ in step}
    sums = torch.stack([losses[task].detach().float() * len(distributed.shard(indices)) for task, indices in step])
    sums = distributed.all_reduce_sum(sums)
    return {task: sums[i] / len(indices) for i, (task, indices) in enumerate(step)}


def logged_losses(run: TrainingRun) -> dict[str, float]:
    """Each task's mean training loss over the examples of every process since the last log point; one
    wait for the device (and one all-reduce under torchrun). Starts the next tally."""
    tasks = sorted(run.loss_sums)
    if not tasks:
        return {}
    sums = distributed.all_reduce_sum(torch.stack([run.loss_sums[task].float() for task in tasks])).tolist()
    losses = {task: total / run.loss_counts[task] for task, total in zip(tasks, sums)}
    run.loss_sums, run.loss_counts = {}, {}
    return losses


def evaluate_selection(run: TrainingRun) -> tuple[dict[str, float], dict]:
    """Metrics and predictions of the model in hand on the selection split (validation, else dev)."""
    metrics, predictions = evaluate(run.model, run.selection_data, run.tokenizer.pad, run.config.eval_batch_size)
    run.pm.hook.platform_on_evaluate_end(run=run, split=run.selection_split, metrics=metrics)
    return metrics, predictions


def end_epoch(run: TrainingRun, started: float) -> None:
    """Evaluate on the selection split, then write the run's files in the order :mod:`core.runfiles`
    explains: ``last.pt``, then for a new best its predictions and ``best.pt``, then ``metrics.json``."""
    trained = time.time()
    metrics, predictions = evaluate_selection(run)
    record = {"epoch": run.epoch, "step": run.global_step, "train_seconds": round(trained - started, 1),
              "eval_seconds": round(time.time() - trained, 1), "peak_rss_mb": round(peak_rss_mb()), **metrics}
    run.history.append(record)
    log.info("epoch %d %s: %s", run.epoch, run.selection_split, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    improved = not run.best or metrics["mean"] > run.best["mean"]
    if improved:
        run.best = {"epoch": run.epoch, **metrics}
    run.pm.hook.platform_on_epoch_end(run=run, epoch=run.epoch, metrics=metrics)
    run.epoch += 1
    run.step_in_epoch = 0
    runfiles.save_last(run)
    if improved:
        runfiles.save_best(run, predictions)
    runfiles.write_metrics(run)


def finish(run: TrainingRun) -> None:
    """After the last epoch, with the best model: with ``--validation-split``, its one dev evaluation
    (``run.dev``, hook ``platform_on_evaluate_end`` with split ``dev``) and dev predictions; then its
    test predictions. Without it, dev predictions were written when the best model was found."""
    if run.best.get("epoch") != run.epoch - 1:  # the model in hand is not the best one
        run.model.load_state_dict(distributed.on_main(run.folder.load, "best.pt")["model"])
    if run.validation_data:
        run.dev, predictions = evaluate(run.model, run.dev_data, run.tokenizer.pad, run.config.eval_batch_size)
        run.pm.hook.platform_on_evaluate_end(run=run, split="dev", metrics=run.dev)
        log.info("dev, once, of the model chosen on validation (epoch %d): %s", run.best["epoch"],
                 ", ".join(f"{k} {v:.4f}" for k, v in run.dev.items()))
        runfiles.write_split_predictions(run, "dev", run.dev_data, predictions)
    runfiles.write_test_predictions(run)


def epoch_plan(run: TrainingRun, epoch: int) -> list:
    """The sampler's plan for ``epoch``, its batches regrouped by length (``--length-window``)."""
    lengths = {name: data.lengths for name, data in run.train_data.items()}
    return bucket_plan(run.sampler.plan(epoch), lengths, run.config.length_window, run.config.seed, epoch)


def train(run: TrainingRun) -> dict[str, float]:
    """Train to the configured number of epochs from wherever ``run`` stands; returns the best metrics
    of the selection split (dev, or validation with ``--validation-split``; then ``run.dev`` holds the
    chosen model's dev metrics)."""
    config, pm = run.config, run.pm
    run.model.train()
    pm.hook.platform_on_train_start(run=run)
    bar = tqdm(total=run.examples_per_epoch * config.epochs, initial=run.examples_seen, desc="train", unit="ex",
               unit_scale=True, dynamic_ncols=True, disable=not distributed.is_main())
    try:
        while run.epoch < config.epochs:
            started = time.time()
            plan = epoch_plan(run, run.epoch)
            if run.step_in_epoch == 0:
                pm.hook.platform_on_epoch_start(run=run, epoch=run.epoch)
            for step in plan[run.step_in_epoch:]:
                seen = run.examples_seen
                losses = train_step(run, step)
                run.step_in_epoch += 1
                run.global_step += 1
                pm.hook.platform_on_after_step(run=run, step=run.global_step, losses=losses)
                bar.update(run.examples_seen - seen)
                if run.global_step % config.log_every == 0:  # the step's only wait for the device
                    logged = logged_losses(run)
                    runfiles.check_finite_losses(run, logged)
                    pm.hook.platform_on_log(run=run, step=run.global_step, losses=logged)
                    bar.set_postfix(epoch=f"{run.epoch + 1}/{config.epochs}",
                                    **{k: f"{v:.3f}" for k, v in logged.items()}, refresh=False)
                if run.step_in_epoch % config.save_every == 0 and run.step_in_epoch < run.steps_per_epoch:
                    runfiles.save_last(run)
            end_epoch(run, started)
        bar.close()
        finish(run)
        pm.hook.platform_on_train_end(run=run, metrics=run.best)
        runfiles.write_metrics(run)
    finally:
        bar.close()
        run.close()  # its folder unlocked, whether it ended or stopped
    return run.best
