"""The studies' commands, ``platform study`` and ``platform dashboard``: a plugin (entry point ``studies``)
that adds them through ``platform_commands``, as any package adds commands."""

from __future__ import annotations

import attrs

from core.api import Command, Component, Invocation, RunConfig, field, hookimpl
from core.base.settings import build
from studies.dashboard import serve
from studies.runner import run_study
from studies.settings import StudySettings


def study_command(settings: StudySettings, invocation: Invocation) -> int:
    run_study(build(RunConfig, invocation.values), settings)
    return 0


@attrs.frozen
class DashboardSettings:
    study: str | None = field(None, "a study under --study-dir (or use --storage)",
                              metadata={"positional": "STUDY", "nargs": "?"})
    study_dir: str = field("runs/studies", "folder of the studies", metadata={"metavar": "DIR"})
    storage: str | None = field(None, "an Optuna storage URL instead of a study's SQLite file",
                                metadata={"metavar": "URL", "default": "none"})
    host: str = field("127.0.0.1", "address to listen on")
    port: int = field(8080, "port (0 picks a free one)")


def dashboard_command(settings: DashboardSettings, invocation: Invocation) -> int:
    serve(settings.study, settings.study_dir, settings.storage, settings.host, settings.port)
    return 0


@hookimpl
def platform_commands() -> list[Component[Command]]:
    return [
        Component("study", Command(study_command, configures="run",
                                   description="Run (or continue) the Optuna study NAME: each trial trains like "
                                               "`platform run` with the base configuration below plus the settings "
                                               "the active search spaces suggest, in <study-dir>/NAME/trial-<number>. "
                                               "See docs/studies.md.",
                                   interrupted="everything written so far is kept (run the same command again to "
                                               "continue the study)"),
                  settings=StudySettings,
                  help="an Optuna hyperparameter study: trials of `platform run` with settings from the search spaces"),
        Component("dashboard", Command(dashboard_command, interrupted="the dashboard stopped"),
                  settings=DashboardSettings, help="serve optuna-dashboard for a study on localhost"),
    ]
