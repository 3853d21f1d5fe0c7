"""How a study runs (``platform study`` options): one attrs class, from which the command line is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from core.base.settings import field, positive_or_none

PRUNERS = ("median", "hyperband", "none")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or value in (".", "..") or any(c in value for c in "/\\"):
        raise ValueError(f"study NAME must be a plain folder name (no slashes), got {value!r}")


@attrs.frozen
class StudySettings:
    """How a study runs; the base configuration of its trials is a separate :class:`core.config.RunConfig`."""

    name: str = field("", "the study's name: its folder is <study-dir>/NAME; running the same NAME again "
                          "continues the study", validator=_check_name, metadata={"positional": "NAME"})
    trials: int | None = field(None, "trials to run now, added to those the study has", validator=positive_or_none,
                               metadata={"metavar": "N", "default": "10; no limit with --timeout"})
    timeout: float | None = field(None, "start no new trial after MIN minutes", validator=positive_or_none,
                                  metadata={"metavar": "MIN", "default": "none"})
    storage: str | None = field(None, "an Optuna RDB storage URL, e.g. postgresql://user@host/db",
                                metadata={"metavar": "URL", "default": "sqlite:///<study-dir>/NAME/study.db"})
    space_file: str | None = field(None, "a TOML file whose [params.NAME] tables narrow (low, high, log, step; "
                                         "choices) or fix (value) parameters of the search space, e.g. "
                                         "studies/interleaved_ratios.toml", metadata={"metavar": "FILE"})
    show_space: bool = field(False, "print the effective search space (parameter, distribution, range or choices, "
                                    "the plugin that contributes it) and exit without training",
                             metadata={"flag": True})
    enqueue: tuple[str, ...] = field((), "a trial to run first with these parameter values (the rest suggested as "
                                         "usual), e.g. the defaults as a baseline: --enqueue smart_weight=5,"
                                         "ratio_sst=32; repeatable; skipped when the study already has a trial with "
                                         "the same values", converter=tuple,
                                     metadata={"metavar": "NAME=VALUE,...", "repeatable": True})
    objective: str = field("mean", "mean: the mean score (on dev, or on the held-out rows with --validation-split); "
                                   "weighted:sst=1,sts=2: a weighted mean of task scores; "
                                   "pareto: one objective per task (multi-objective, no pruning); all maximized",
                           metadata={"metavar": "SPEC"})
    pruner: str = field("median", "stop unpromising trials after an epoch: median (below the median of earlier "
                                  "trials, after 5 trials, from the second epoch), hyperband, or none",
                        validator=v.in_(PRUNERS), metadata={"choices": PRUNERS})
    heartbeat: int = field(60, "seconds between the heartbeats of a running trial; a RUNNING trial silent for twice "
                               "as long belongs to a worker that died and is marked failed",
                           validator=positive_or_none, metadata={"metavar": "SECONDS"})
    study_dir: str = field("runs/studies", "folder of the studies", metadata={"metavar": "DIR"})

    @property
    def folder(self) -> Path:
        return Path(self.study_dir) / self.name
