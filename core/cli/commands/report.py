"""``platform report``: runs summed up as small result files (JSON), a Markdown table, and plots of scores
and learning curves."""

from __future__ import annotations

from pathlib import Path

import attrs

from core.base.errors import ConfigError
from core.base.settings import assignments, field, names
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation
from core.report import plots, summary


@attrs.frozen
class ReportSettings:
    inputs: list[Path] = field(attrs.Factory(list), "run folders and result files", converter=list,
                               metadata={"positional": "RUN_OR_JSON", "nargs": "+"})
    json_dir: Path | None = field(None, "write DIR/NAME.json for every run folder given",
                                  metadata={"metavar": "DIR", "default": "none"})
    name: str | None = field(None, "the row's name (default: the run folder's name; one run folder only)",
                             metadata={"default": "the folder's name"})
    label: str | None = field(None, "the row's label in plots; rows of one label are the seeds of one configuration, "
                                    "drawn as mean and sd", metadata={"default": "its name"})
    command_line: str | None = field(None, "the command that trained the run, recorded in its row (one run folder "
                                           "only)", metadata={"option": "command", "metavar": "CMD", "default": "none"})
    note: str | None = field(None, "free text recorded in the rows of the run folders given (threads, load, ...)",
                             metadata={"default": "none"})
    relabel: dict[str, str] = field(attrs.Factory(dict), "labels for this table and plot by row name, for rows "
                                                        "from several studies (their result files keep theirs)",
                                    converter=assignments(str, "NAME=LABEL, e.g. i13-i-combined-3ep=minilm-l6 full"),
                                    metadata={"metavar": "NAME=LABEL,...", "default": "none"})
    table: bool = field(False, "print a Markdown table: a line per label (seeds as mean ± sd), dev scores, epochs",
                        metadata={"flag": True})
    plot: Path | None = field(None, "write DIR/scores.png (needs matplotlib: the plots extra)",
                              metadata={"metavar": "DIR", "default": "none"})
    curves: str | None = field(None, "also write DIR/curves-NAME.png for the row NAME",
                               metadata={"metavar": "NAME", "default": "none"})
    tasks: tuple[str, ...] = field((), "tasks to plot, in order", converter=names,
                                   metadata={"default": "every task the rows report"})
    targets: dict[str, float] = field(attrs.Factory(dict), "dashed target lines on scores.png",
                                      converter=assignments(float, "TASK=SCORE, e.g. sst=0.53,sts=0.88"),
                                      metadata={"metavar": "TASK=SCORE,...", "default": "none"})


def report_command(settings: ReportSettings, invocation: Invocation) -> int:
    folders = [path for path in settings.inputs if path.is_dir()]
    if (settings.command_line or settings.name) and len(folders) != 1:
        raise ConfigError("--command and --name describe one run: give one run folder with them")
    if settings.curves and not settings.plot:
        raise ConfigError("--curves NAME draws into the --plot folder: give --plot DIR too")
    rows = []
    for path in settings.inputs:
        if path.is_dir():
            row = summary.summarize(path, name=settings.name, label=settings.label, command=settings.command_line,
                                    note=settings.note)
            if settings.json_dir:
                print(summary.write(row, settings.json_dir))
            rows.append(row)
        else:
            rows.extend(summary.load_rows([path]))
    rows = relabelled(rows, settings.relabel)
    tasks = list(settings.tasks) or None
    if settings.table:
        print(summary.markdown_table(rows, tasks))
    if settings.plot:
        print(plots.save(plots.scores_figure(rows, tasks, dict(settings.targets)), settings.plot / "scores.png"))
        if settings.curves:
            chosen = [row for row in rows if row["name"] == settings.curves]
            if not chosen:
                raise ConfigError(f"--curves {settings.curves}: no such row; the rows are "
                                  f"{', '.join(row['name'] for row in rows)}")
            print(plots.save(plots.curves_figure(chosen[0]), settings.plot / f"curves-{settings.curves}.png"))
    return 0


def relabelled(rows: list[dict], labels: dict[str, str]) -> list[dict]:
    """The rows with the labels of --relabel NAME=LABEL; a NAME that is no row's is an error naming the rows."""
    unknown = sorted(set(labels) - {row["name"] for row in rows})
    if unknown:
        raise ConfigError(f"--relabel {unknown[0]}: no such row; the rows are {', '.join(row['name'] for row in rows)}")
    return [{**row, "label": labels[row["name"]]} if row["name"] in labels else row for row in rows]


COMMAND = Component(
    "report", Command(report_command,
                      description="Read run folders and result files (earlier --json-dir output); write a result file "
                                  "per run folder (--json-dir) and plots (--plot): DIR/scores.png, dev scores per "
                                  "configuration, and DIR/curves-NAME.png, the learning curves of one row (--curves "
                                  "NAME)."),
    settings=ReportSettings, help="sum runs up as small result files (JSON) and plot scores and learning curves")
