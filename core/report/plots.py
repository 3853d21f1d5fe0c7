"""Plots of result rows (:mod:`core.report`): dev scores per configuration as grouped bars, and the
learning curves of one run. matplotlib (the ``plots`` extra: ``pip install -e '.[plots]'``) draws
them off-screen (Agg); each function returns its figure, so what it drew can be checked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.base.errors import ConfigError
from core.report.summary import grouped, row_tasks

DPI = 100
SCORES_SIZE = (10.0, 5.0)  # inches: 1000 x 500 pixels at DPI
CURVES_SIZE = (12.0, 4.5)  # 1200 x 450


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install -e '.[plots]'") from None
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its font cache's news under the CLI's INFO
    import matplotlib.pyplot as plt

    return plt


def scores_figure(rows: list[dict[str, Any]], tasks: list[str] | None = None,
                  targets: dict[str, float] | None = None):
    """Grouped bars: one group per configuration (label; rows sharing a label are seeds, drawn as the
    mean with an sd error bar), one bar per task, the reported dev score on top; targets as dashed
    lines in the task's colour."""
    plt = pyplot()
    tasks = tasks or row_tasks(rows)
    labels = list(dict.fromkeys(row["label"] for row in rows))
    figure, axes = plt.subplots(figsize=SCORES_SIZE, dpi=DPI)
    width = 0.8 / max(1, len(tasks))
    for number, task in enumerate(tasks):
        scores = grouped(rows, task)
        means = [scores[label][0] for label in labels]
        errors = [scores[label][1] for label in labels]
        positions = [i + (number - (len(tasks) - 1) / 2) * width for i in range(len(labels))]
        bars = axes.bar(positions, means, width, yerr=errors if any(errors) else None, capsize=3, label=task,
                        color=f"C{number}")
        axes.bar_label(bars, labels=[f"{m:.3f}" if m == m else "" for m in means], fontsize=7, rotation=90,
                       padding=2)
        if targets and task in targets:
            axes.axhline(targets[task], color=f"C{number}", linestyle="--", linewidth=1,
                         label=f"{task} target {targets[task]:g}")
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("dev score (accuracy; Pearson for STS)")
    axes.set_ylim(0.0, 1.05)
    axes.set_title("dev scores per configuration")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure


def curves_figure(row: dict[str, Any]):
    """Two panels of one run: each task's score per epoch on the selection split (and the chosen
    model's dev score, marked at its epoch), and each task's training loss per logged step."""
    plt = pyplot()
    figure, (scores, losses) = plt.subplots(1, 2, figsize=CURVES_SIZE, dpi=DPI)
    history, tasks = row["history"], [task for task in row["config"]["tasks"] if task in row["history"][0]]
    epochs = [record["epoch"] + 1 for record in history]
    for number, task in enumerate(tasks):
        scores.plot(epochs, [record[task] for record in history], marker="o", color=f"C{number}",
                    label=f"{task} ({row['selected_on']})")
        if task in row["dev"]:
            scores.plot([row["best"]["epoch"] + 1], [row["dev"][task]], marker="*", markersize=12, linestyle="none",
                        color=f"C{number}", label=f"{task} dev")
    scores.set_xlabel("epoch")
    scores.set_ylabel("score")
    scores.set_xticks(epochs)
    scores.set_title(f"{row['label']}: score per epoch")
    scores.legend(fontsize=7)
    steps_per_epoch = history[0]["step"] if history else 0
    for number, task in enumerate(tasks):
        points = row["train_loss"].get(task, [])
        losses.plot([p[0] for p in points], [p[1] for p in points], color=f"C{number}", label=task)
    for record in history[:-1]:
        losses.axvline(record["step"], color="grey", linewidth=0.5, linestyle=":")
    losses.set_xlabel(f"step ({steps_per_epoch} per epoch)")
    losses.set_ylabel("training loss (mean since the last log point)")
    losses.set_title("training loss")
    losses.legend(fontsize=7)
    figure.tight_layout()
    return figure


def save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    pyplot().close(figure)
    return path
