"""``platform pretrain``: further pretraining, the masked-language-model objective on task text and text
files; the run folder becomes a checkpoint (``platform run --checkpoint FOLDER``)."""

from __future__ import annotations

import sys

import attrs

from core.base.errors import ConfigError
from core.base.settings import build, field
from core.build.pretrain import prepare
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation
from core.pretrain.config import PretrainConfig
from core.pretrain.loop import train


@attrs.frozen
class PretrainSettings:
    resume: str | None = field(None, "continue the pretraining run in RUN_DIR", metadata={"metavar": "RUN_DIR",
                                                                                        "default": "none"})


def pretrain_command(settings: PretrainSettings, invocation: Invocation) -> int:
    if settings.resume:
        given = [name for name in invocation.typed if name != "components"]
        given += [f"{component}_{setting}" for component, values in invocation.typed.get("components", {}).items()
                  for setting in values]
        if given:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ConfigError(f"--resume {settings.resume} continues the pretraining run with the configuration it "
                              f"was started with; {options} would change it: drop them, or start a new run")
        run = prepare(PretrainConfig(output_dir=settings.resume), resume=True)
    else:
        run = prepare(build(PretrainConfig, invocation.values, source="platform pretrain"))
    print(f"run folder: {run.output_dir}", file=sys.stderr)
    metrics = train(run)
    before, after = metrics["before"], metrics["after"]
    print(f"held-out MLM perplexity: {before['perplexity']:.3f} at step {before['step']}, "
          f"{after['perplexity']:.3f} at step {after['step']} (masked-token accuracy {before['accuracy']:.4f} -> "
          f"{after['accuracy']:.4f}); {metrics['train_seconds']:.0f} s of training")
    print(f"checkpoint: {run.output_dir} (platform run --checkpoint {run.output_dir})")
    return 0


COMMAND = Component(
    "pretrain", Command(pretrain_command, configures="pretrain",
                        description="Continue the masked-language-model objective of --checkpoint on the train text "
                                    "of tasks and/or text files; the run folder becomes a checkpoint (platform run "
                                    "--checkpoint FOLDER).",
                        interrupted="everything written so far is kept (resume with --resume RUN_DIR)"),
    settings=PretrainSettings,
    help="further pretraining: the masked-language-model objective on task text and text files")
