"""Configurations from files: ``--config FILE`` (TOML, or an earlier run's ``config.json``), and the saved
configuration of a run folder that ``--resume`` names.

A TOML file holds the configuration's options as keys, written as their fields are named (``lr = 5e-5``,
``tasks = ["sst", "sts"]``, ``loss_weights = {sts = 20}``), and the settings of components in tables
``[components.NAME]`` (``[components.smart]`` ``weight = 2``): the layout of a run's ``config.json``, so
either serves. Options given on the command line beside ``--config`` override the file's values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import tomllib

from core.base.errors import ConfigError
from core.pretrain.config import RUN_CONFIG as PRETRAIN_CONFIG
from core.pretrain.config import PretrainConfig
from core.experiment.config import RunConfig

CONFIGURATIONS: dict[str, type] = {"run": RunConfig, "pretrain": PretrainConfig}  # what a command configures


def load_config_file(path: str | Path, cls: type | None = None) -> dict[str, Any]:
    """The configuration values of ``--config FILE``, their names checked against ``cls``'s fields (when
    given: the first pass of the command line reads the file before it knows the command)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path}: cannot be read ({type(error).__name__}); give a TOML file or a "
                          "run's config.json") from None
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"--config {path}: not valid {kind}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a table of settings, got {type(values).__name__}")
    known = {field.name for field in attrs.fields(cls)} if cls is not None else set(values)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    components = values.get("components", {})
    if not isinstance(components, dict) or not all(isinstance(table, dict) for table in components.values()):
        raise ConfigError(f"--config {path}: components must be tables of settings, [components.NAME]")
    return values


def saved_configuration(folder: str | Path) -> dict[str, Any]:
    """The configuration values a run folder was started with (``config.json``, or ``pretrain.json`` of a
    pretraining run); empty when the folder holds neither (the command then says what is wrong)."""
    for name in ("config.json", PRETRAIN_CONFIG):
        try:
            values = json.loads((Path(folder) / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            return values
    return {}
