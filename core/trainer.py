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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
import torch
from tqdm.auto import tqdm

from core import assembly, checkpoints, distributed, runfiles, runfolder
from core.bucketing import bucket_plan, split_by_tokens
from core.config import RunConfig
from core.data import VALIDATION, SplitData, make_batch
from core.devices import resolve_device
from core.evaluation import evaluate
from core.memory import peak_rss_mb
from core.multitask import MultitaskModel
from core.optim import build_optimizer
from core.regularizers import Regularizer
from core.sampling import Sampler
from core.tokenizer import Tokenizer

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("platform")


@attrs.define
class RunContext:
    """The live state of a run, handed to every loop hook as ``run``."""

    config: RunConfig
    pm: pluggy.PluginManager
    output_dir: Path
    model: MultitaskModel
    tokenizer: Tokenizer
    train_data: dict[str, SplitData]
    dev_data: dict[str, SplitData]
    sampler: Sampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    regularizers: dict[str, Regularizer]
    steps_per_epoch: int  # counted once from the first epoch's plan: every epoch has as many
    examples_per_epoch: int
    validation_data: dict[str, SplitData] = attrs.Factory(dict)  # held out of train (--validation-split), or none
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    examples_seen: int = 0
    history: list[dict[str, Any]] = attrs.Factory(list)  # per epoch: the selection split's metrics
    best: dict[str, float] = attrs.Factory(dict)  # the selection split's best epoch
    dev: dict[str, float] = attrs.Factory(dict)  # with --validation-split: dev metrics of the best model, at the end
    plugin_state: dict[str, Any] = attrs.Factory(dict)  # scratch space of plugins, by plugin name
    ddp: Any = None  # the model in DistributedDataParallel under torchrun (core.distributed.wrap), else None
    # per task since the last log point: this process's summed losses (on the device); every process's examples
    loss_weights: dict[str, float] = attrs.Factory(dict)  # --loss-weights, per task of the run
    loss_sums: dict[str, torch.Tensor] = attrs.Factory(dict)
    loss_counts: dict[str, int] = attrs.Factory(dict)
    _writer: Any = None

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @property
    def writer(self) -> SummaryWriter:
        """The run's TensorBoard ``SummaryWriter`` (created on first use); plugins log through it. On
        every process but the main one it writes nothing."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = (SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=self.global_step or None)
                            if distributed.is_main() else distributed.NullWriter())
        return self._writer

    @property
    def selection_split(self) -> str:
        """The split epochs are evaluated and ``best.pt`` chosen on: ``validation`` or ``dev``."""
        return VALIDATION if self.validation_data else "dev"

    @property
    def selection_data(self) -> dict[str, SplitData]:
        return self.validation_data or self.dev_data

    @property
    def progress(self) -> float:
        """Fraction of training done, 0 at the first step and 1 after the last."""
        return self.global_step / max(1, self.total_steps)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def prepare(config: RunConfig, pm: pluggy.PluginManager | None = None, *, resume: bool = False,
            overwrite: bool = False) -> RunContext:
    """Build every part of a run from ``config``. A new run claims its folder (see
    :func:`core.runfolder.claim`; ``overwrite`` clears an earlier run there); with ``resume``, ``config``
    must be the run's saved one (but for :data:`core.runfolder.MAY_CHANGE_ON_RESUME`) and ``last.pt`` is
    restored."""
    distributed.setup(resolve_device(config.device))
    config = distributed.on_main(runfolder.finalize, config)  # one folder name (and precision) for every process
    output_dir = Path(config.output_dir)
    has_last = False
    if resume:
        config = distributed.on_main(runfolder.check_resumable, config, output_dir)
        has_last = distributed.on_main((output_dir / "last.pt").exists)
        if not has_last:
            distributed.on_main(runfolder.check_restartable, output_dir)
    else:
        distributed.on_main(runfolder.claim, output_dir, overwrite=overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    pm = pm or assembly.plugin_manager(config)
    registries = assembly.Registries(pm)
    tasks = assembly.select_tasks(config, registries)
    sampler_entry = assembly.lookup(registries.samplers, config.sampler, "--sampler")
    topology = assembly.select_topology(config, registries, pm)
    tokenizer = assembly.load_tokenizer(config)
    with distributed.local_main_first():  # one process per node fills the tokenization cache
        train_data = assembly.load_data(config, tasks, tokenizer, "train")
        dev_data = assembly.load_data(config, tasks, tokenizer, "dev")
        validation_data = assembly.load_data(config, tasks, tokenizer, VALIDATION) if config.validation_split else {}
    sizes = {name: len(data) for name, data in train_data.items()}
    sampler = sampler_entry.value(assembly.component_config(config, sampler_entry), sizes,
                                  config.batch_size, config.seed, config.epochs)
    model = assembly.build_model(config, tasks, topology)
    ddp = distributed.wrap(model)
    distributed.seed(config.seed)
    first = sampler.plan(0)  # every epoch's plan has its shape: counted once, here
    updates_per_epoch = sum(len(step) if config.update == "sequential" else 1 for step in first)
    optimizer, scheduler = build_optimizer(config, model, updates_per_epoch * config.epochs)
    regularizers = {entry.name: entry.value(assembly.component_config(config, entry), model)
                    for entry in assembly.select_regularizers(registries, pm)}
    run = RunContext(config, pm, output_dir, model, tokenizer, train_data, dev_data, sampler, optimizer,
                     scheduler, regularizers, steps_per_epoch=len(first),
                     examples_per_epoch=sum(len(indices) for step in first for _, indices in step),
                     validation_data=validation_data, loss_weights=config.task_loss_weights, ddp=ddp)
    if distributed.is_main():
        output_dir.mkdir(parents=True, exist_ok=True)
    if has_last:
        runfiles.restore(run, distributed.on_main(checkpoints.load, output_dir / "last.pt"))
        runfiles.save_best_if_behind(run)
    if distributed.is_main():
        config.save(output_dir / "config.json")
    return run


def chunk_loss(run: RunContext, task: str, indices: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
    return total, terms


def task_step(run: RunContext, task: str, indices: list[int]) -> dict[str, torch.Tensor]:
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


def optimizer_step(run: RunContext) -> None:
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    for regularizer in run.regularizers.values():
        regularizer.after_step(run.model)


def train_step(run: RunContext, step: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """One planned step: a batch of one or more tasks, each updated on its own (``sequential``) or
    all in one update on the sum of their losses (``summed``: gradients accumulate over tasks).
    Returns each task's loss on this process's examples, on the device; adds it to the log tally."""
    losses: dict[str, torch.Tensor] = {}
    for task, indices in step:
        losses[task] = task_step(run, task, indices)["loss"]
        if run.config.update == "sequential":
            optimizer_step(run)
        run.examples_seen += len(indices)
        tally = losses[task].detach() * len(distributed.shard(indices))
        run.loss_sums[task] = run.loss_sums[task] + tally if task in run.loss_sums else tally
        run.loss_counts[task] = run.loss_counts.get(task, 0) + len(indices)
    if run.config.update == "summed":
        optimizer_step(run)
    return losses


def logged_losses(run: RunContext) -> dict[str, float]:
    """Each task's mean training loss over the examples of every process since the last log point; one
    wait for the device (and one all-reduce under torchrun). Starts the next tally."""
    tasks = sorted(run.loss_sums)
    if not tasks:
        return {}
    sums = distributed.all_reduce_sum(torch.stack([run.loss_sums[task].float() for task in tasks])).tolist()
    losses = {task: total / run.loss_counts[task] for task, total in zip(tasks, sums)}
    run.loss_sums, run.loss_counts = {}, {}
    return losses


def evaluate_selection(run: RunContext) -> tuple[dict[str, float], dict]:
    """Metrics and predictions of the model in hand on the selection split (validation, else dev)."""
    metrics, predictions = evaluate(run.model, run.selection_data, run.tokenizer.pad, run.config.eval_batch_size)
    run.pm.hook.platform_on_evaluate_end(run=run, split=run.selection_split, metrics=metrics)
    return metrics, predictions


def end_epoch(run: RunContext, started: float) -> None:
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


def finish(run: RunContext) -> None:
    """After the last epoch, with the best model: with ``--validation-split``, its one dev evaluation
    (``run.dev``, hook ``platform_on_evaluate_end`` with split ``dev``) and dev predictions; then its
    test predictions. Without it, dev predictions were written when the best model was found."""
    if run.best.get("epoch") != run.epoch - 1:  # the model in hand is not the best one
        run.model.load_state_dict(distributed.on_main(checkpoints.load, run.output_dir / "best.pt")["model"])
    if run.validation_data:
        run.dev, predictions = evaluate(run.model, run.dev_data, run.tokenizer.pad, run.config.eval_batch_size)
        run.pm.hook.platform_on_evaluate_end(run=run, split="dev", metrics=run.dev)
        log.info("dev, once, of the model chosen on validation (epoch %d): %s", run.best["epoch"],
                 ", ".join(f"{k} {v:.4f}" for k, v in run.dev.items()))
        runfiles.write_split_predictions(run, "dev", run.dev_data, predictions)
    runfiles.write_test_predictions(run)


def epoch_plan(run: RunContext, epoch: int) -> list:
    """The sampler's plan for ``epoch``, its batches regrouped by length (``--length-window``)."""
    lengths = {name: data.lengths for name, data in run.train_data.items()}
    return bucket_plan(run.sampler.plan(epoch), lengths, run.config.length_window, run.config.seed, epoch)


def train(run: RunContext) -> dict[str, float]:
    """Train to the configured number of epochs from wherever ``run`` stands; returns the best metrics
    of the selection split (dev, or validation with ``--validation-split``; then ``run.dev`` holds the
    chosen model's dev metrics)."""
    config, pm = run.config, run.pm
    run.model.train()
    for regularizer in run.regularizers.values():
        regularizer.on_train_start(run)
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
                    pm.hook.platform_on_log(run=run, step=run.global_step, losses=logged)
                    bar.set_postfix(epoch=f"{run.epoch + 1}/{config.epochs}",
                                    **{k: f"{v:.3f}" for k, v in logged.items()}, refresh=False)
                if run.step_in_epoch % config.save_every == 0 and run.step_in_epoch < run.steps_per_epoch:
                    runfiles.save_last(run)
            end_epoch(run, started)
    finally:
        bar.close()
    finish(run)
    pm.hook.platform_on_train_end(run=run, metrics=run.best)
    runfiles.write_metrics(run)
    run.close()
    return run.best
