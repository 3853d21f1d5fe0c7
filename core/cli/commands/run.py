"""``platform run``: train a (multitask) model, evaluating it every epoch; ``--resume`` continues a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs

from core.base import distributed
from core.base.errors import ConfigError
from core.base.files import check_folder
from core.base.settings import build, field
from core.build.run import prepare
from core.cli.commands.output import format_metrics
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation
from core.experiment.config import RunConfig
from core.experiment.folder import saved_config
from core.train.loop import train


@attrs.frozen
class RunSettings:
    """How ``platform run`` treats its folder; the configuration itself is a :class:`RunConfig`."""

    resume: str | None = field(None, "continue the run in RUN_DIR where it stopped, with the configuration it was "
                                     "started with (only --threads, --data-dir, --save-every and --log-every may be "
                                     "given beside it)", metadata={"metavar": "RUN_DIR", "default": "none"})
    overwrite: bool = field(False, "start again from scratch in an --output-dir that holds an earlier run, clearing "
                                   "it (a folder holding anything but a run is never written into)",
                            metadata={"flag": True})


def run_command(settings: RunSettings, invocation: Invocation) -> int:
    if settings.resume:
        if settings.overwrite:
            raise ConfigError("--resume continues a run and --overwrite starts one again: give one of them")
        if "config" in invocation.typed:
            raise ConfigError("--resume continues a run with its saved configuration: leave --config out")
        check_folder(settings.resume, "--resume", "pass the run folder")
        run = prepare(resume_config(Path(settings.resume), invocation.typed), invocation.pm, resume=True)
    else:
        run = prepare(build(RunConfig, invocation.values), invocation.pm, overwrite=settings.overwrite)
    if distributed.is_main():
        print(f"run folder: {run.output_dir}", file=sys.stderr)
    try:
        best = train(run)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (core.cli.main): say where the run stands
        if distributed.is_main():
            kept = (f"last.pt holds step {run.saved_step}" if run.saved_step is not None
                    else "no checkpoint was written yet")
            print(f"stopped at epoch {run.epoch + 1} of {run.config.epochs}, step {run.global_step}; {kept}",
                  file=sys.stderr)
        raise
    if distributed.is_main():
        print(format_metrics(f"best {run.selection_split}", best))
        if run.dev:
            print(format_metrics(f"dev of the model chosen on {run.selection_split}", run.dev))
    return 0


def resume_config(folder: Path, typed: dict[str, Any]) -> RunConfig:
    """The saved configuration of the run in ``folder`` with the options typed beside ``--resume`` laid
    over; :func:`core.build.run.prepare` refuses those that would change the run, by name."""
    values = dict(typed)
    if values.pop("output_dir", str(folder)) != str(folder):
        raise ConfigError(f"--resume {folder} and --output-dir {typed['output_dir']} name two folders: give --resume "
                          "only")
    saved = saved_config(folder)
    components = {name: dict(settings) for name, settings in saved.components.items()}
    for name, settings in values.pop("components", {}).items():
        components.setdefault(name, {}).update(settings)
    return build(RunConfig, {**saved.to_dict(), **values, "components": components, "output_dir": str(folder)},
                 source=f"--resume {folder}")


COMMAND = Component("run", Command(run_command, configures="run",
                                   interrupted="everything written so far is kept (resume with --resume RUN_DIR)"),
                    settings=RunSettings, help="train a (multitask) model and evaluate it on dev every epoch")
