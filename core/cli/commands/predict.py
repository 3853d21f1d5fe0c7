"""``platform predict``: dev and test prediction files of a trained run (or of an ensemble)."""

from __future__ import annotations

from pathlib import Path

import attrs

from core.base.settings import field
from core.build.trained import predict_checkpoint
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation


@attrs.frozen
class PredictSettings:
    runs: list[Path] = field(attrs.Factory(list), "a run folder or its best.pt; several: an ensemble, their head "
                                                 "outputs averaged", converter=list,
                             metadata={"positional": "RUN", "nargs": "+"})
    out: Path | None = field(None, "folder for the prediction files (needed with several runs)",
                             metadata={"metavar": "DIR", "default": "RUN/predictions"})
    data_dir: str | None = field(None, "folder of the task files", metadata={"metavar": "DIR", "default": "the run's"})


def predict_command(settings: PredictSettings, invocation: Invocation) -> int:
    for path in predict_checkpoint(settings.runs, out=settings.out, data_dir=settings.data_dir):
        print(path)
    return 0


COMMAND = Component("predict", Command(predict_command), settings=PredictSettings,
                    help="write dev and test predictions of a trained run (or an ensemble)")
