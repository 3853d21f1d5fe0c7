"""Building a training run (``platform run``, a study's trial) from its configuration: the folder it
claims (or resumes), its parts (:class:`core.build.parts.RunParts`), the optimizer and schedule, and,
resumed, the state of ``last.pt``."""

from __future__ import annotations

import os
from pathlib import Path

import pluggy
import torch

from core.base import distributed
from core.base.devices import resolve_device
from core.build.parts import RunParts, with_defaults
from core.data.folders import resolve_data_dir
from core.experiment import fingerprint
from core.experiment import folder as runfolder
from core.experiment.config import RunConfig
from core.tasks.splits import VALIDATION
from core.train import checkpointing as runfiles
from core.train.context import TrainingRun
from core.train.gradients import split_parameters
from core.train.optim import build_optimizer


def prepare(config: RunConfig, pm: pluggy.PluginManager | None = None, *, resume: bool = False,
            overwrite: bool = False) -> TrainingRun:
    """Build every part of a run from ``config``. Every name and setting is checked first; then a new run
    claims its folder (see :func:`core.experiment.folder.claim`; ``overwrite`` clears an earlier run there) or,
    with ``resume``, the run's folder is locked, ``config`` must be its saved one (but for
    :data:`core.experiment.folder.MAY_CHANGE_ON_RESUME`), its data unchanged, and ``last.pt`` is restored. The
    folder stays locked until the run is closed; a folder this call made and left empty is removed when
    building fails."""
    distributed.setup(resolve_device(config.device))
    parts = RunParts(config, pm)
    config = with_defaults(config, parts.registries)
    if not resume:
        RunParts(config, parts.pm).check()  # every name and setting, before the folder is touched
    named = config.output_dir
    made = distributed.on_main(lambda: named is None or not os.path.exists(named))  # this call makes the folder
    config = distributed.on_main(runfolder.finalize, config)  # one folder name (and precision) for every process
    folder = runfolder.RunFolder(runfolder.folder_of(config))  # locked by the main process, below
    try:
        return _build(config, parts, folder, resume=resume, overwrite=overwrite)
    except BaseException:
        folder.close()
        if distributed.is_main() and made:
            _remove_if_empty(folder.path)
        raise


def _build(config: RunConfig, parts: RunParts, folder: runfolder.RunFolder, *, resume: bool,
           overwrite: bool) -> TrainingRun:
    has_last, output_dir = False, folder.path
    if resume:
        config = distributed.on_main(runfolder.check_resumable, config, output_dir,
                                     lambda saved: with_defaults(saved, parts.registries))
        distributed.on_main(folder.take_for_resume)
        has_last = distributed.on_main((output_dir / "last.pt").exists)
        if not has_last:
            distributed.on_main(runfolder.check_restartable, output_dir)
    else:
        distributed.on_main(folder.claim, overwrite=overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    parts = RunParts(config, parts.pm)  # the configuration as finalized (and, resumed, as saved)
    pm = parts.pm
    parts.check()
    data_files = fingerprint.fingerprints(parts.tasks, resolve_data_dir(config.data_dir))
    if resume:
        distributed.on_main(fingerprint.check, output_dir, data_files)
    tokenizer = parts.tokenizer
    with distributed.local_main_first():  # one process per node fills the tokenization cache
        train_data = parts.data("train")
        dev_data = parts.data("dev")
        validation_data = parts.data(VALIDATION) if config.validation_split else {}
    sizes = {name: len(data) for name, data in train_data.items()}
    sampler = parts.sampler.factory(parts.settings(parts.sampler), sizes, config.batch_size, config.seed,
                                    config.epochs)
    model = parts.model()
    ddp = distributed.wrap(model)
    distributed.seed(config.seed)
    first = sampler.plan(0)  # every epoch's plan has its shape: counted once, here
    updates_per_epoch = sum(len(step) if config.update == "sequential" else 1 for step in first)
    optimizer, scheduler = build_optimizer(config, model, updates_per_epoch * config.epochs)
    regularizers = {component.name: component.factory(parts.settings(component), model)
                    for component in parts.regularizers}
    balancer = parts.balancer.factory(parts.settings(parts.balancer), list(parts.tasks), config.seed)
    run = TrainingRun(config=config, pm=pm, folder=folder, model=model, tokenizer=tokenizer,
                      train_data=train_data, dev_data=dev_data, sampler=sampler, optimizer=optimizer,
                      scheduler=scheduler, regularizers=regularizers, balancer=balancer,
                      parameter_split=split_parameters(model, model.heads), steps_per_epoch=len(first),
                      examples_per_epoch=sum(len(indices) for step in first for _, indices in step),
                      validation_data=validation_data, loss_weights=config.task_loss_weights, ddp=ddp)
    for name, regularizer in regularizers.items():  # a regularizer receives the loop hooks as plugins do
        pm.register(regularizer, name=f"regularizer:{name}")
    pm.register(balancer, name="balancer")  # so does the balancer
    if has_last:
        runfiles.restore(run, distributed.on_main(folder.load, "last.pt"))
        runfiles.save_best_if_behind(run)
    if distributed.is_main():
        if not resume:
            fingerprint.record(output_dir, data_files)
        config.save(output_dir / "config.json")
    return run


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` when a failed start left it empty."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
