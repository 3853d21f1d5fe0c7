"""``platform evaluate``: metrics of a trained run's best model (or of several runs' mean output)."""

from __future__ import annotations

from pathlib import Path

import attrs
from attrs import validators as v

from core.base.settings import field
from core.build.trained import evaluate_checkpoint
from core.cli.commands.output import format_metrics
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation

SPLITS = ("dev", "validation")


@attrs.frozen
class EvaluateSettings:
    runs: list[Path] = field(attrs.Factory(list), "a run folder or its best.pt; several: an ensemble, their head "
                                                 "outputs averaged", converter=list,
                             metadata={"positional": "RUN", "nargs": "+"})
    file: Path | None = field(None, "a labelled file in the task's format (default: the dev files)",
                              metadata={"metavar": "FILE", "default": "none"})
    task: str | None = field(None, "the task of --file (needed when the run has several)", metadata={"default": "none"})
    split: str = field("dev", "dev, or validation: the rows the run held out of its train files with "
                              "--validation-split", validator=v.in_(SPLITS), metadata={"choices": SPLITS})
    data_dir: str | None = field(None, "folder of the task files", metadata={"metavar": "DIR", "default": "the run's"})


def evaluate_command(settings: EvaluateSettings, invocation: Invocation) -> int:
    metrics = evaluate_checkpoint(settings.runs, file=settings.file, task=settings.task, data_dir=settings.data_dir,
                                  split=settings.split)
    title = settings.split if not settings.file else str(settings.file)
    if len(settings.runs) > 1:
        title = f"{title} (ensemble of {len(settings.runs)} runs)"
    print(format_metrics(title, metrics))
    return 0


COMMAND = Component("evaluate", Command(evaluate_command), settings=EvaluateSettings,
                    help="dev metrics of a trained run (or of any file of the same format); of several runs' mean "
                         "outputs (an ensemble)")
