"""The live state of a run, handed to every loop hook as ``run``: :class:`Run`, and :class:`TrainingRun`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
import torch

from core.data.tokenizer import Tokenizer
from core.model.multitask import MultitaskModel
from core.experiment.config import RunConfig
from core.experiment.folder import RunFolder
from core.tasks.splits import VALIDATION, SplitData
from core.train.balancer import Balancer
from core.train.gradients import ParameterSplit
from core.train.regularizer import Regularizer
from core.train.sampling import Sampler

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


@attrs.define(kw_only=True)
class Run:
    """What every run has (``platform run``'s :class:`TrainingRun`, ``platform pretrain``'s
    ``PretrainingRun``), handed to every loop hook as ``run``."""

    config: Any
    pm: pluggy.PluginManager
    folder: RunFolder  # its lock held (by the main process) until the run is closed
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    global_step: int = 0
    examples_seen: int = 0  # training examples (sequences, for pretraining) seen so far
    plugin_state: dict[str, Any] = attrs.Factory(dict)  # scratch space of plugins, by plugin name

    @property
    def output_dir(self) -> Path:
        """The run folder's path."""
        return self.folder.path

    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    @property
    def progress(self) -> float:
        """Fraction of training done, 0 at the first step and 1 after the last."""
        return self.global_step / max(1, self.total_steps)

    @property
    def writer(self) -> SummaryWriter:
        """The run's TensorBoard ``SummaryWriter`` (created on first use); plugins log through it. On
        every process but the main one it writes nothing."""
        return self.folder.writer(self.global_step)

    def close(self) -> None:
        """End the run: the writer closes, the folder's lock is released (closing twice is harmless)."""
        self.folder.close()


@attrs.define(kw_only=True)
class TrainingRun(Run):
    """The live state of a training run (``platform run``, a study's trial)."""

    config: RunConfig
    model: MultitaskModel
    tokenizer: Tokenizer
    train_data: dict[str, SplitData]
    dev_data: dict[str, SplitData]
    sampler: Sampler
    regularizers: dict[str, Regularizer]
    balancer: Balancer  # how a summed step's task losses become one update (core.train.balancer)
    parameter_split: ParameterSplit  # the shared parameters apart from each task's own (a gradient balancer's)
    steps_per_epoch: int  # counted once from the first epoch's plan: every epoch has as many
    examples_per_epoch: int
    validation_data: dict[str, SplitData] = attrs.Factory(dict)  # held out of train (--validation-split), or none
    epoch: int = 0
    step_in_epoch: int = 0
    history: list[dict[str, Any]] = attrs.Factory(list)  # per epoch: the selection split's metrics
    best: dict[str, float] = attrs.Factory(dict)  # the selection split's best epoch
    dev: dict[str, float] = attrs.Factory(dict)  # with --validation-split: dev metrics of the best model, at the end
    saved_step: int | None = None  # the global step last.pt holds, once one was saved (or restored)
    ddp: Any = None  # the model in DistributedDataParallel under torchrun (core.distributed.wrap), else None
    loss_weights: dict[str, float] = attrs.Factory(dict)  # --loss-weights, per task of the run
    # per task since the last log point: this process's summed losses (on the device); every process's examples
    loss_sums: dict[str, torch.Tensor] = attrs.Factory(dict)
    loss_counts: dict[str, int] = attrs.Factory(dict)
    # the last summed step's: each task's weight (as the balancer gives one) and the cosines between the tasks'
    # gradients of the shared parameters (a gradient-based balancer's); on the device, for telemetry
    step_weights: dict[str, torch.Tensor | float] = attrs.Factory(dict)
    gradient_cosines: dict[tuple[str, str], torch.Tensor] = attrs.Factory(dict)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @property
    def selection_split(self) -> str:
        """The split epochs are evaluated and ``best.pt`` chosen on: ``validation`` or ``dev``."""
        return VALIDATION if self.validation_data else "dev"

    @property
    def selection_data(self) -> dict[str, SplitData]:
        return self.validation_data or self.dev_data

    def close(self) -> None:
        """End the run: its regularizers and balancer stop receiving the plugin manager's hook calls, the
        writer closes."""
        for name in [f"regularizer:{name}" for name in self.regularizers] + ["balancer"]:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
        super().close()
