"""``platform study``: open (or continue) an Optuna study, run its trials, report them.

A study lives in ``<study-dir>/<NAME>/``: ``study.db`` (the default SQLite storage), one run folder
per trial (``trial-<number>``), and ``hparams/`` (TensorBoard HParams of every finished trial).
Re-running the same NAME continues the study; nothing in an existing study is ever deleted.

Under torchrun a study runs each trial on all the processes: the main one opens the storage and asks
Optuna for trials, the others follow it (:func:`studies.objective.follow`). Several such jobs (or
plain workers) on machines of their own share one study through a PostgreSQL storage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

import attrs
import optuna

from core.base import distributed
from core.base.devices import resolve_device
from core.base.errors import PlatformError
from core.build.parts import RunParts, with_defaults
from core.data.folders import resolve_data_dir
from core.plugin.component import Component
from core.plugin.manager import make_plugin_manager
from core.experiment import fingerprint
from core.experiment.config import RunConfig, differences
from studies.methods import balancer_choices, method_spaces
from studies.objective import Objective, TrialRunner, follow, make_pruner, parse_objective
from studies.settings import StudySettings
from studies.space import ActiveSpace, dry_run, format_space, load_space_file, parse_enqueued
from studies.table import aligned


class StudyError(PlatformError):
    """A study that cannot be opened or continued as asked; the message names the study or storage."""


def run_study(base: RunConfig, settings: StudySettings, *, plugins: Iterable[object] = (),
              pruner: optuna.pruners.BasePruner | None = None, out: TextIO | None = None) -> optuna.Study | None:
    """Run (or continue) the study, print its trials, and return it; with ``show_space``, print the
    effective space and return None (every process but the main one returns None under torchrun).
    ``plugins`` are registered on every run's manager beside the enabled ones (fixture plugins);
    ``pruner`` replaces ``settings.pruner``; output goes to ``out`` (default: standard output)."""
    out = out or sys.stdout
    if base.output_dir:
        raise StudyError(f"--output-dir is set per trial (<study-dir>/NAME/trial-N, here {settings.folder}/trial-N); "
                         "choose the folder with --study-dir")
    main = distributed.setup(resolve_device(base.device)).is_main
    plugins = list(plugins)

    def plugin_manager(config: RunConfig):
        pm = make_plugin_manager(enabled=config.plugins)
        for index, plugin in enumerate(plugins):
            pm.register(plugin, name=f"study-extra-{index}")
        return pm

    pm = plugin_manager(base)
    parts = RunParts(base, pm)
    base = with_defaults(base, parts.registries)
    parts = RunParts(base, pm)
    choices = balancer_choices(parts.registries, base.balancer)
    checked = RunParts(attrs.evolve(base, balancer=choices[0]), pm) if choices else parts  # the default's
    recorded_base = base_record(base, checked.check())
    data_files = study_data(parts)
    spaces = active_spaces(parts)
    rules = load_space_file(settings.space_file) if settings.space_file else {}
    suggested = dry_run(base, spaces, rules, source=settings.space_file or "--space-file",
                        check=lambda config: RunParts(config, pm).check())
    if settings.show_space:
        if main:
            print(format_space(suggested), file=out)
        return None
    enqueued = [parse_enqueued(text, suggested) for text in settings.enqueue]

    objective = parse_objective(settings.objective, base.tasks)
    runner = TrialRunner(base, spaces, rules, objective, settings.folder, plugin_manager)
    if not main:
        follow(runner)
        return None
    try:
        return _run_main(settings, objective, runner, enqueued, pruner, out, recorded_base, data_files)
    finally:
        distributed.broadcast_object(None)  # the other processes stop following


def study_data(parts: RunParts) -> dict[str, dict[str, Any]] | None:
    """The fingerprints of the data files the study's trials read; None when the data folder cannot be found
    (every trial then fails saying where it looked)."""
    try:
        data_dir = resolve_data_dir(parts.config.data_dir)
    except PlatformError:
        return None
    return fingerprint.fingerprints(parts.tasks, data_dir)


def active_spaces(parts: RunParts) -> list[ActiveSpace]:
    """The spaces a study of ``parts``'s configuration searches: the spaces over the run's own settings,
    then the own space of each component that takes part (sampler, topology, balancer, regularizers, model
    transforms); when the study chooses the balancer (:mod:`studies.methods`), the space that draws it and each
    method's own."""
    choices = balancer_choices(parts.registries, parts.config.balancer)
    components: list[Component[Any]] = [parts.sampler, parts.topology, *([] if choices else [parts.balancer]),
                                        *parts.regularizers, *parts.transforms]
    spaces = [ActiveSpace(space.name, space.plugin, space.factory) for space in parts.registries.search_spaces]
    spaces += [ActiveSpace(component.name, component.plugin, component.space, component=component.name)
               for component in components if component.space is not None]
    return spaces + method_spaces(parts.registries, choices)


def _run_main(settings: StudySettings, objective: Objective, runner: TrialRunner, enqueued: list[dict],
              pruner: optuna.pruners.BasePruner | None, out: TextIO, recorded_base: dict[str, Any],
              data_files: dict[str, dict[str, Any]] | None) -> optuna.Study:
    if objective.multi:  # Optuna does not prune multi-objective studies
        pruner = optuna.pruners.NopPruner()
    pruner = pruner or make_pruner(settings.pruner, runner.base.epochs)
    if settings.storage is None:
        settings.folder.mkdir(parents=True, exist_ok=True)  # the SQLite file goes there
    url = settings.storage or f"sqlite:///{(settings.folder / 'study.db').resolve()}"
    storage = open_storage(url, settings.heartbeat)
    settings.folder.mkdir(parents=True, exist_ok=True)
    hparams = HParamsWriter(settings.folder / "hparams")
    try:
        study = open_study(storage, url, settings.name, objective, pruner, recorded_base, data_files)
        if objective.multi:
            print("note: pruning is off for --objective pareto (Optuna does not prune multi-objective studies)",
                  file=out)
        for params in enqueued:  # skipped when the study already has a trial with these values
            study.enqueue_trial(params, skip_if_exists=True)
        ran: list[optuna.trial.FrozenTrial] = []  # this process's trials (other workers may share the study)
        trials = settings.trials if settings.trials or settings.timeout else 10
        with interrupts_unlogged():
            study.optimize(runner, n_trials=trials, timeout=settings.timeout and settings.timeout * 60,
                           catch=(Exception,), callbacks=[hparams, lambda study, trial: ran.append(trial)])
        print(format_trials(study, objective), file=out)
        print(format_best(study, objective), file=out)
        if ran and all(t.state == optuna.trial.TrialState.FAIL for t in ran):
            raise StudyError(f"study {settings.name!r}: all {len(ran)} trial(s) of this run failed; "
                             f"first error: {ran[0].user_attrs.get('error', 'unknown')}")
        return study
    finally:
        hparams.close()
        storage.engine.dispose()


# --------------------------------------------------------------------------------------------------
# Storage and study
# --------------------------------------------------------------------------------------------------


def open_storage(url: str, heartbeat: int = 60) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats: while a trial runs, its worker records one every ``heartbeat``
    seconds; before each new trial, any worker marks failed the RUNNING trials silent for twice as
    long (their worker died), so a trial is never lost nor counted twice."""
    import sqlalchemy.exc

    _check_url(url)
    attempts = 5
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                                  heartbeat_stale_trial_callback=_report_stale)
        except ImportError as error:
            raise StudyError(f"--storage: cannot open {safe_url(url)}: the database driver for this URL is not "
                             f"installed ({_hidden(str(error.__cause__ or error), url)}; pip install -e '.[postgres]' "
                             "for postgresql://)") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                optuna.exceptions.StorageInternalError) as error:
            # workers that open a new database at once race to create its tables: the loser tries again
            if attempt == attempts - 1:
                raise _cannot_open(url, error) from None
            time.sleep(0.5 + random.random())
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:
            raise _cannot_open(url, error) from None
    raise AssertionError("not reached")


def _cannot_open(url: str, error: Exception) -> StudyError:
    return StudyError(f"--storage: cannot open {safe_url(url)}: {_hidden(str(error).splitlines()[0], url)}")


def _report_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    logging.getLogger(__name__).warning(f"trial {trial.number} of study {study.study_name!r} was marked failed: "
                                        "its worker stopped sending heartbeats")


def safe_url(url: str) -> str:
    """``url`` as it may be shown (printed, logged, put in an error): its password hidden, as ``***``.

    The whole text from the ``:`` after the user name to the *last* ``@`` is hidden, whichever parser
    reads the URL: SQLAlchemy ends the password at the first ``@``, ``urllib`` at the last one, so a
    password holding an unencoded ``@`` would leak in part with either alone. A ``password=`` query
    parameter is hidden too."""
    shown = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@" if m["password"] is not None else m[0], url)
    return _QUERY_PASSWORD.sub(r"\1***", shown)


_USERINFO = re.compile(r"^(?P<scheme>[\w+.-]+://)(?P<user>[^:/@]*)(?::(?P<password>.*))?@", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


def _hidden(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) with every form of the URL's password hidden."""
    secrets = set()
    for match in (_USERINFO.match(url), re.search(r"[?&]password=([^&]*)", url, re.IGNORECASE)):
        if match is not None and match.lastindex and match[match.lastindex]:
            secrets.add(match[match.lastindex])
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
        secrets |= {str(password)} if password else set()
    except Exception:  # not a URL SQLAlchemy parses: the patterns above are all there is
        pass
    text = text.replace(url, safe_url(url))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _check_url(url: str) -> None:
    """Refuse a URL whose user name or password holds an unencoded ``@``: SQLAlchemy would take what
    follows the first ``@`` for the host (and try to connect there)."""
    from sqlalchemy.engine import make_url

    try:
        host = make_url(url).host
    except Exception:  # reported by the storage, as any URL it cannot parse
        return
    if host and "@" in host:
        raise StudyError(f"--storage {safe_url(url)}: the user name or password holds an '@'; write it as %40 in "
                         "the URL, or leave the password out of the URL and set PGPASSWORD (PostgreSQL)")


def open_study(storage: optuna.storages.RDBStorage, url: str, name: str, objective: Objective,
               pruner: optuna.pruners.BasePruner, base: dict[str, Any] | None = None,
               data: dict[str, dict[str, Any]] | None = None) -> optuna.Study:
    """Load the study ``name``, or create it; an existing study must have the same direction(s),
    objective, base configuration (``base``, see :func:`base_record`) and train and dev data (``data``:
    the fingerprints of :func:`core.experiment.fingerprint.fingerprints`; a changed test file is only reported).
    Nothing in it is changed when it does not."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        study_id = None
    if study_id is not None:
        existing = [d.name.lower() for d in storage.get_study_directions(study_id)]
        if existing != objective.directions:
            raise StudyError(f"study {name!r} in {safe_url(url)} has direction(s) {existing}, but --objective "
                             f"{objective.spec} needs {objective.directions}; choose another NAME (the existing "
                             "study was left as it is)")
        user_attrs = storage.get_study_user_attrs(study_id)
        recorded = user_attrs.get("objective")
        if recorded is not None and recorded != objective.spec:
            raise StudyError(f"study {name!r} in {safe_url(url)} optimizes {recorded}, not {objective.spec}; choose "
                             "another NAME or the same --objective (the existing study was left as it is)")
        if base is not None and user_attrs.get(BASE_ATTR) is not None and user_attrs[BASE_ATTR] != base:
            raise StudyError(f"study {name!r} in {safe_url(url)} was created with another base configuration: "
                             f"{'; '.join(differences(user_attrs[BASE_ATTR], base))}; give the options it was created "
                             "with, or choose another NAME (the existing study was left as it is)")
        if data is not None and user_attrs.get(DATA_ATTR) is not None:
            check_study_data(name, user_attrs[DATA_ATTR], data)
    study = optuna.create_study(storage=storage, study_name=name, directions=objective.directions, pruner=pruner,
                                load_if_exists=True)
    if study_id is None:
        study.set_user_attr("objective", objective.spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objective.metric_names)
    if base is not None and BASE_ATTR not in study.user_attrs:  # new, or made before studies recorded it
        if study_id is not None and study.trials:  # (a worker that found it new may just be recording it)
            logging.getLogger(__name__).warning(f"study {name!r} has no recorded base configuration (it was made "
                                                "by an older version); this run's is recorded from now on")
        study.set_user_attr(BASE_ATTR, base)
    if data is not None and DATA_ATTR not in study.user_attrs:
        study.set_user_attr(DATA_ATTR, data)
    return study


@contextlib.contextmanager
def interrupts_unlogged() -> Iterator[None]:
    """Optuna logs a trial stopped by Ctrl-C (or SIGTERM) as failed, with a traceback, then once more as failed
    with value None; the command says it in one line instead (the trial is still recorded as failed)."""
    interrupted = False

    def not_about_an_interrupt(record: logging.LogRecord) -> bool:
        nonlocal interrupted
        if record.exc_info and record.exc_info[0] is not None and issubclass(record.exc_info[0], KeyboardInterrupt):
            interrupted = True
        return not interrupted

    logger = logging.getLogger("optuna.study._optimize")
    logger.addFilter(not_about_an_interrupt)
    try:
        yield
    finally:
        logger.removeFilter(not_about_an_interrupt)


DATA_ATTR = "data_files"  # the fingerprints of the data files the study's trials read


def check_study_data(name: str, recorded: dict[str, dict[str, Any]], files: dict[str, dict[str, Any]]) -> None:
    """Refuse to continue a study whose train or dev files changed since it started (its trials would be
    ranked across two versions of the data), naming the files; report a changed test file."""
    changed = {file: entry for file, entry in recorded.items()
               if file in files and files[file]["sha256"] != entry["sha256"]}
    refused = [file for file, entry in changed.items()
               if any(split.rpartition("/")[2] in fingerprint.REFUSED for split in entry["splits"])]
    if refused:
        raise StudyError(f"study {name!r}: the data changed since the study started: {', '.join(refused)} "
                         f"({'; '.join(', '.join(changed[file]['splits']) for file in refused)}); its trials would be "
                         "ranked across two versions of the data: restore the files, or start a new study (another "
                         "NAME); the existing study was left as it is")
    for file in changed:
        logging.getLogger("platform").warning("%s changed since the study started (%s)", file,
                                              ", ".join(changed[file]["splits"]))


# --------------------------------------------------------------------------------------------------
# The base configuration a study records
# --------------------------------------------------------------------------------------------------

BASE_ATTR = "base_config"
# settings that may differ between the workers and the continuations of one study: where the files are,
# what a machine computes with, how often a run logs and saves; none of them changes what a trial learns
WORKER_SETTINGS = ("output_dir", "data_dir", "threads", "device", "eval_batch_size", "max_batch_tokens",
                   "save_every", "log_every")


def base_record(base: RunConfig, components: dict[str, dict]) -> dict[str, Any]:
    """The base configuration as a study records it (user attribute ``base_config``): every setting but
    :data:`WORKER_SETTINGS`, and the settings of the active components (``components``) with their
    defaults filled in, as JSON values."""
    record = {name: value for name, value in base.to_dict().items() if name not in WORKER_SETTINGS}
    record["plugins"] = sorted(base.plugins)  # the order of --plugins changes nothing
    return json.loads(json.dumps({**record, "components": components}))


# --------------------------------------------------------------------------------------------------
# Reporting: TensorBoard HParams and the table of trials
# --------------------------------------------------------------------------------------------------


def trial_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Suggested and fixed (space file) parameters of a trial, by name."""
    fixed = {key.partition(":")[2]: value for key, value in trial.user_attrs.items() if key.startswith("fixed:")}
    return dict(sorted({**trial.params, **fixed}.items()))


class HParamsWriter:
    """After each finished trial, its parameters and best metrics (of its selection split: ``dev/…`` or
    ``validation/…``, and the chosen model's ``dev/…`` with ``--validation-split``) as TensorBoard HParams under
    ``<folder>/trial-<number>``, so ``tensorboard --logdir <folder>`` compares trials."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._writer: Any = None  # a SummaryWriter, made at the first finished trial

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        metrics = trial.user_attrs.get("metrics")
        if not metrics:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        split = trial.user_attrs.get("selected_on", "dev")
        scores = {f"{split}/{name}": float(value) for name, value in metrics.items() if name != "epoch"}
        scores.update({f"dev/{name}": float(value) for name, value in trial.user_attrs.get("dev_metrics", {}).items()})
        if trial.values and len(trial.values) == 1:  # pareto trials have their per-task scores already
            scores["objective"] = float(trial.values[0])
        hparams = {name: value if isinstance(value, (int, float, str, bool)) else str(value)
                   for name, value in trial_params(trial).items()}
        self._writer.add_hparams({**hparams, "state": trial.state.name}, scores, run_name=f"trial-{trial.number}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_trials(study: optuna.Study, objective: Objective) -> str:
    """Every trial of the study: number, state, value(s) and parameters (fixed ones marked)."""
    rows = [("trial", "state", " / ".join(objective.metric_names), "params")]
    for trial in study.trials:
        values = " / ".join(f"{v:.4f}" for v in trial.values) if trial.values else "-"
        params = ", ".join(f"{name}={_number(value)}" + (" (fixed)" if f"fixed:{name}" in trial.user_attrs else "")
                           for name, value in trial_params(trial).items())
        note = trial.user_attrs.get("error") or trial.user_attrs.get("reason") or ""
        rows.append((str(trial.number), trial.state.name, values, params + (f"  [{note}]" if note else "")))
    return aligned(rows)


def format_best(study: optuna.Study, objective: Objective) -> str:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return "no trial has completed yet"
    if objective.multi:
        return "Pareto-optimal trials: " + "; ".join(
            f"{t.number} ({', '.join(f'{n} {v:.4f}' for n, v in zip(objective.metric_names, t.values))}) "
            f"{t.user_attrs.get('run_dir')}" for t in study.best_trials)
    best = study.best_trial
    return f"best trial: {best.number} ({objective.spec} {best.value:.4f}), run folder {best.user_attrs.get('run_dir')}"
