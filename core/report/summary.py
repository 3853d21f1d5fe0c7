"""Results as small files: a run folder summed up as one JSON row (``platform report --json-dir``), and
the rows read back, from run folders or those files, for tables and plots (:mod:`core.plots`).

A row holds what a results table needs and nothing heavy: the configuration, which split chose the
model (``selected_on``), the per-epoch metrics and seconds, the best epoch, the dev metrics to report
(the chosen model's once-only dev evaluation with ``--validation-split``, else the best dev epoch), the
training loss curves from the run's TensorBoard events, the command that trained it and the machine.
"""

from __future__ import annotations

import json
import logging
import math
import platform as host
from pathlib import Path
from typing import Any

from core.base.errors import ConfigError
from core.base.files import atomic_write
from core.experiment.config import RunConfig

FORMAT = "platform-result/1"
# The settings a results table shows; the whole configuration stays in the run's config.json.
CONFIG_KEYS = ("tasks", "plugins", "checkpoint", "mode", "sampler", "update", "topology", "pooling", "epochs",
               "batch_size", "lr", "weight_decay", "layer_decay", "head_lr_multiplier", "loss_weights", "warmup",
               "dropout", "seed", "max_length", "limit", "validation_split", "threads", "device", "precision",
               "components")


def summarize(run_dir: Path, *, name: str | None = None, label: str | None = None, command: str | None = None,
              note: str | None = None) -> dict[str, Any]:
    """The result row of the run in ``run_dir`` (see the module docstring)."""
    run_dir = Path(run_dir)
    metrics_file, config_file = run_dir / "metrics.json", run_dir / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.json) and not a result file (.json)")
    if not metrics_file.is_file():
        raise ConfigError(f"{run_dir}: the run has no metrics.json yet (it has not finished an epoch)")
    # checked, defaults filled in (a run older than a setting), as JSON has it (lists): a row reads back equal
    config = json.loads(json.dumps(RunConfig.load(config_file).to_dict()))
    metrics = read_metrics(metrics_file)
    selected_on = metrics.get("selected_on", "dev")
    return {
        "format": FORMAT,
        "name": name or run_dir.name,
        "label": label or name or run_dir.name,
        "command": command,
        "note": note,
        "run_dir": str(run_dir),
        "config": {key: config[key] for key in CONFIG_KEYS},
        "selected_on": selected_on,
        "best": metrics["best"],
        "dev": metrics["dev"] if selected_on != "dev" else {k: v for k, v in metrics["best"].items() if k != "epoch"},
        "history": metrics["history"],
        "examples_seen": metrics.get("examples_seen"),
        "train_loss": train_losses(run_dir / "tensorboard"),
        "machine": machine(),
    }


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json``, checked to hold what a row needs; a file cut short or edited into
    something else is named, with what would write it again."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError(f"a JSON {type(metrics).__name__}, not an object")
        missing = [key for key in ("best", "history") if key not in metrics]
        if missing:
            raise ValueError(f"no {' and no '.join(missing)}")
    except (OSError, ValueError) as error:  # json's errors are ValueErrors
        raise ConfigError(f"{path}: not a readable metrics file ({getattr(error, 'strerror', None) or error}); "
                          f"`platform run --resume {path.parent}` writes it again") from None
    return metrics


def train_losses(folder: Path) -> dict[str, list[list[float]]]:
    """``{task: [[step, loss], ...]}`` from the ``train/loss/<task>`` scalars of a run's TensorBoard
    events (one point per ``--log-every`` steps); empty when the run wrote none."""
    if not folder.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # not its reader's progress under the CLI's INFO
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()  # 0: every point
    prefix = "train/loss/"
    return {tag[len(prefix):]: [[event.step, round(event.value, 5)] for event in events.Scalars(tag)]
            for tag in sorted(events.Tags()["scalars"]) if tag.startswith(prefix)}


def machine() -> dict[str, Any]:
    """Where the row was summed up: CPU model, cores, torch version (a run trains on the same machine)."""
    import os

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               host.processor() or host.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": host.python_version()}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write(row: dict[str, Any], folder: Path) -> Path:
    """``folder/<name>.json`` (the folder is made)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--json-dir {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row['name']}.json"
    atomic_write(path, json.dumps(row, indent=1) + "\n")
    return path


def load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """The rows of run folders and result files, in the order given."""
    rows = []
    for path in map(Path, paths):
        if path.is_dir():
            rows.append(summarize(path))
            continue
        try:
            row = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such run folder or result file") from None
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: not a result file ({error})") from None
        if not isinstance(row, dict) or row.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a result file of `platform report` (format {FORMAT!r})")
        rows.append(row)
    return rows


def row_tasks(rows: list[dict[str, Any]]) -> list[str]:
    """Every task the rows report on dev, in order of first appearance."""
    tasks: dict[str, None] = {}
    for row in rows:
        tasks.update({task: None for task in row["config"]["tasks"] if task in row["dev"]})
    return list(tasks)


def grouped(rows: list[dict[str, Any]], task: str) -> dict[str, tuple[float, float, int]]:
    """Per label (rows of one label are seeds of one configuration): (mean, sd, n) of the dev score of
    ``task``, over the rows that have it; sd is 0 for one row."""
    values: dict[str, list[float]] = {}
    for row in rows:
        values.setdefault(row["label"], [])
        if task in row["dev"]:
            values[row["label"]].append(float(row["dev"][task]))
    out = {}
    for label, scores in values.items():
        if not scores:
            out[label] = (math.nan, 0.0, 0)
            continue
        mean = sum(scores) / len(scores)
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) if len(scores) > 1 else 0.0
        out[label] = (mean, sd, len(scores))
    return out


def markdown_table(rows: list[dict[str, Any]], tasks: list[str] | None = None) -> str:
    """A Markdown table with a line per label (rows of one label are seeds: dev as mean ± sd over them),
    in order of first appearance: the dev score of every task and their mean, the chosen epoch of the
    epochs trained, the split that chose it, training seconds per epoch, and the rows' names."""
    tasks = tasks or row_tasks(rows)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    scores = {task: grouped(rows, task) for task in [*tasks, "mean"]}
    lines = [f"| configuration | seeds | {' | '.join(tasks)} | mean | epoch chosen | chosen on | train s / epoch | rows |",
             "|" + "---|" * (len(tasks) + 7)]
    for label, members in by_label.items():
        cells = [_mean_sd(*scores[task][label]) for task in [*tasks, "mean"]]
        epochs = sorted({f"{row['best']['epoch'] + 1} of {len(row['history'])}" for row in members})
        chosen_on = sorted({row["selected_on"] for row in members})
        seconds = [epoch["train_seconds"] for row in members for epoch in row["history"] if "train_seconds" in epoch]
        per_epoch = f"{sum(seconds) / len(seconds):.0f}" if seconds else "–"
        names = ", ".join(f"[{row['name']}](results/{row['name']}.json)" for row in members)
        lines.append(f"| {label} | {len(members)} | {' | '.join(cells)} | {', '.join(epochs)} | {', '.join(chosen_on)} "
                     f"| {per_epoch} | {names} |")
    return "\n".join(lines)


def _mean_sd(mean: float, sd: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {sd:.4f}" if n > 1 else f"{mean:.4f}"
