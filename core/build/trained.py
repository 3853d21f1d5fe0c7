"""Using trained runs: rebuild a model from ``best.pt`` (or several, as an ensemble) and evaluate or predict."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import pluggy

from core.base import files as checkpoints
from core.base.errors import ConfigError
from core.base.files import check_folder
from core.build.parts import RunParts
from core.data.folders import resolve_data_dir
from core.model.ensemble import Ensemble
from core.experiment import folder as runfolder
from core.experiment.config import RunConfig, load_data
from core.tasks.splits import VALIDATION, load_split
from core.train.evaluation import evaluate, predict_split, write_predictions

log = logging.getLogger("platform")


def load_run(path: Path, data_dir: str | None = None, pm: pluggy.PluginManager | None = None):
    """(config, model, tokenizer) of a run folder or checkpoint file; the model is in eval mode. ``pm``:
    the plugin manager to rebuild it with (default: the run's plugins among those installed), as
    ``core.build.run.prepare`` takes one."""
    state = checkpoints.load(path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    recorded = runfolder.best_epoch_recorded(folder)
    saved_epoch = state.get("metrics", {}).get("epoch")
    if recorded == "unreadable":
        log.warning("%s cannot be read (a corrupt file?): the run's record of its best epoch is lost; %s holds "
                    "epoch %s and is used as it is", folder / "metrics.json", folder / "best.pt", saved_epoch)
    elif recorded == "missing":
        log.warning("%s holds epoch %s, but %s is missing: the run stopped while saving; `platform run --resume %s` "
                    "writes it", folder / "best.pt", saved_epoch, folder / "metrics.json", folder)
    elif recorded is not None and recorded != saved_epoch:
        log.warning("%s holds epoch %s, but %s records epoch %s as best: the run stopped while saving; "
                    "`platform run --resume %s` makes them agree", folder / "best.pt", saved_epoch,
                    folder / "metrics.json", recorded, folder)
    config = RunConfig.from_dict(state["config"], source=str(path))
    if data_dir:
        config = attrs.evolve(config, data_dir=data_dir)
    parts = RunParts(config, pm)
    parts.check()
    model = parts.model()
    model.load_state_dict(state["model"])
    return config, model.eval(), parts.tokenizer


def load_models(paths: list[Path], data_dir: str | None = None, split: str = "dev",
                pm: pluggy.PluginManager | None = None):
    """(config, model, tokenizer) of one run, or of several as an :class:`~core.ensemble.Ensemble` (with the
    first run's config and tokenizer, which the others share)."""
    if len({path.resolve() for path in paths}) != len(paths):
        raise ConfigError(f"a run is given twice among {', '.join(map(str, paths))}")
    loaded = [load_run(path, data_dir, pm) for path in paths]
    if len(loaded) == 1:
        return loaded[0]
    check_members([config for config, _, _ in loaded], paths, split)
    config, _, tokenizer = loaded[0]
    return config, Ensemble([model for _, model, _ in loaded]).eval(), tokenizer


def as_paths(path: Path | str | list) -> list[Path]:
    return [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]


def evaluate_checkpoint(path: Path | list[Path], *, file: Path | None = None, task: str | None = None,
                        data_dir: str | None = None, split: str = "dev",
                        pm: pluggy.PluginManager | None = None) -> dict[str, float]:
    """Metrics of a run's best model on ``split`` (``dev``, or ``validation``: the rows it held out of
    its train files), or on a labelled ``file`` of ``task``; of several runs' mean output when ``path`` is a
    list (an ensemble)."""
    if file is not None and split != "dev":
        raise ConfigError(f"--split {split} and --file {file} both say what to evaluate: give one of them")
    paths = as_paths(path)
    config, model, tokenizer = load_models(paths, data_dir, split, pm)
    if split == VALIDATION and not config.validation_split:
        raise ConfigError(f"--split validation: the run in {paths[0]} held out no validation rows (it was trained "
                          "without --validation-split); use --split dev")
    if file is None:
        data = load_data(config, model.tasks, tokenizer, split)
    else:
        if task is None and len(model.tasks) > 1:
            raise ConfigError(f"--task is needed with --file: the run has tasks {', '.join(model.tasks)}")
        name = task or next(iter(model.tasks))
        if name not in model.tasks:
            raise ConfigError(f"--task {name}: the run was trained on {', '.join(model.tasks)}")
        bound = model.tasks[name].with_files({"train": "-", "dev": str(Path(file).resolve())})
        data = {name: load_split(bound, "dev", data_dir=Path("/"), tokenizer=tokenizer, max_length=config.max_length)}
    metrics, _ = evaluate(model, data, tokenizer.pad, config.eval_batch_size)
    return metrics


def predict_checkpoint(path: Path | list[Path], *, out: Path | None = None, data_dir: str | None = None,
                       pm: pluggy.PluginManager | None = None) -> list[Path]:
    """Dev and test prediction files of a run (default: RUN/predictions), or of several runs' mean output
    (an ensemble, into ``out``: they belong to none of the runs)."""
    paths = as_paths(path)
    if out is not None:
        check_folder(out, "--out")
    elif len(paths) > 1:
        raise ConfigError("--out is needed with several runs: an ensemble's predictions belong to none of their folders")
    config, model, tokenizer = load_models(paths, data_dir, pm=pm)
    first = paths[0]
    out = Path(out) if out else (first if first.is_dir() else first.parent) / "predictions"
    written = []
    resolve_data_dir(config.data_dir)  # fail early, naming where it looked
    # Every file is read (and checked) before anything is written: a broken test file leaves no dev files.
    splits = {split: load_data(config, model.tasks, tokenizer, split) for split in ("dev", "test")}
    for split, loaded in splits.items():
        for name, data in loaded.items():
            target = out / f"{name}-{split}-output.csv"
            write_predictions(target, data, predict_split(model, data, tokenizer.pad, config.eval_batch_size))
            written.append(target)
    return written


MUST_AGREE = ("tasks", "checkpoint", "max_length")  # what the shared tokenized inputs depend on


def check_members(configs: list[RunConfig], paths: list[Path], split: str) -> None:
    """Refuse runs whose inputs would differ, naming the runs and the setting."""
    fields = MUST_AGREE + (("validation_split",) if split == "validation" else ())
    first = configs[0]
    for config, path in zip(configs[1:], paths[1:]):
        for name in fields:
            if getattr(config, name) != getattr(first, name):
                raise ConfigError(f"{path} and {paths[0]} cannot be evaluated together: their {name} differs "
                                  f"({getattr(config, name)!r} vs {getattr(first, name)!r}); an ensemble's runs share "
                                  f"their inputs ({', '.join(fields)})")
