"""Reading task files: tab-separated rows checked against their header, errors that name file, line and task.

The CS224N files are tab-separated as released: a header row, a leading unnamed index column (two
in the test-student files), and quoted fields. They are read with Python's csv module (tab delimiter,
``"`` quotes doubled inside a quoted field, as pandas reads them), after one rule that every released
file keeps: a row lies on one line and has as many fields as the header. A file that breaks it (a
stray tab, an extra column, a quote that never closes), is not UTF-8, has no data rows, or repeats or
leaves out an id raises :class:`DataError` as one line ``FILE:LINE: what (task NAME)``, with 1-based
physical line numbers, because reading on would shift columns (sentences read as ids) without a word.
Blank lines are skipped. Labels are parsed by the task's kind (after the spec's ``label_map``, if any); rows
whose label is missing, unparsable, or does not fit the row (a tag count other than the word count) are
skipped and counted in one warning per file. A task in another format brings its own ``reader``, whose
rows get the same id and label checks; it is told the split it reads, so a task that ships one file can
cut a fixed dev split from it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs

from core.base.errors import ConfigError
from core.data.tables import check_file, file_error, read_table, unreadable
from core.tasks.spec import TaskSpec
from core.tasks.task import Task

log = logging.getLogger("platform")






@attrs.frozen
class Rows:
    """The examples of a task file: ids, the values of each text column, and parsed labels (None for an
    unlabelled split); ``lines`` are their 1-based line numbers in the file, for messages."""

    ids: list[str]
    texts: list[list[Any]]  # per text column, per example
    labels: list[Any] | None
    lines: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: list[int]) -> "Rows":
        return Rows([self.ids[i] for i in keep], [[column[i] for i in keep] for column in self.texts],
                    None if self.labels is None else [self.labels[i] for i in keep], [self.lines[i] for i in keep])


def read_rows(task: Task, path: Path, *, labelled: bool, split: str | None = None) -> Rows:
    """The rows of one task file: ``id``, the text columns, and parsed labels when ``labelled``; rows
    whose label the task cannot parse are skipped (one warning per file). A task with its own
    ``reader`` reads its own format, as ``split`` (default: "dev" when labelled, else "test"); its rows
    are checked here alike."""
    path, spec = Path(path), task.spec
    wanted = [spec.id_column, *spec.text_columns] + ([spec.label_column] if labelled else [])
    if spec.reader is not None:
        columns, lines = read_custom(task, path, split or ("dev" if labelled else "test"), wanted)
    else:
        columns, lines = read_tsv(spec, path, wanted)
    check_ids(path, spec, lines, columns[spec.id_column])
    texts = [columns[column] for column in spec.text_columns]
    if not labelled:
        return Rows(columns[spec.id_column], texts, None, lines)
    labels = parse_labels(path, task, lines, columns)
    rows = Rows(columns[spec.id_column], texts, labels, lines)
    return rows.select([i for i, label in enumerate(labels) if label is not None])


def read_tsv(spec: TaskSpec, path: Path, wanted: list[str]) -> tuple[dict[str, list[str]], list[int]]:
    (header_line, header), lines, rows = read_table(path, spec.name)
    missing = [column for column in wanted if column not in header]
    if missing:
        raise file_error(path, header_line, f"missing column(s) {missing}; the header has {header}", spec.name)
    repeated = [column for column in wanted if header.count(column) > 1]
    if repeated:
        raise file_error(path, header_line, f"column(s) {repeated} appear more than once in the header {header}",
                         spec.name)
    return {column: [fields[header.index(column)] for fields in rows] for column in wanted}, lines


def read_custom(task: Task, path: Path, split: str, wanted: list[str]) -> tuple[dict[str, list], list[int]]:
    """Rows of ``split`` from the task's own reader: dicts holding the ``wanted`` columns (and optionally
    ``line``)."""
    spec = task.spec
    check_file(path, spec.name)
    if spec.reader is None:
        raise ConfigError(f"task {spec.name!r} has no reader of its own")
    try:
        rows = list(spec.reader(spec, path, split))
    except OSError as error:
        raise unreadable(path, error, spec.name) from None
    if not rows:
        raise file_error(path, None, "no examples in the file", spec.name)
    for number, row in enumerate(rows, 1):
        missing = [column for column in wanted if column not in row]
        if missing:
            raise file_error(path, row.get("line", number), f"the task's reader gave no {missing}", spec.name)
    return {column: [row[column] for row in rows] for column in wanted}, [row.get("line", n) for n, row in enumerate(rows, 1)]



def check_ids(path: Path, task: TaskSpec, lines: list[int], ids: list[str]) -> None:
    """Every row has an id of its own: predictions are matched to examples by id."""
    seen: dict[str, int] = {}
    for line, value in zip(lines, ids):
        if not value.strip():
            raise file_error(path, line, f"empty {task.id_column!r}", task.name)
        if value in seen:
            raise file_error(path, line, f"{task.id_column!r} {value!r} repeats that of line {seen[value]}", task.name)
        seen[value] = line


def parser_name(task: Task) -> str:
    """What parses a task's labels: its kind's ``parse_label``, named with the module it comes from."""
    return f"parse_label of task kind {task.kind.name!r} ({type(task.kind).__module__})"


def parse_labels(path: Path, task: Task, lines: list[int], columns: dict[str, list]) -> list[Any]:
    """The label of each row as the task parses it, None where it is missing, unparsable, or does not fit
    the row's texts as the task's kind sees them (one tag per word), counted in one warning."""
    spec = task.spec
    labels = []
    for line, value in zip(lines, columns[spec.label_column]):
        try:
            labels.append(task.parse_label(value))
        except Exception as error:  # a plugin's code: name it, and the row it failed on
            reason = (str(error).strip().splitlines() or [""])[0]
            raise file_error(path, line, f"the task's {parser_name(task)} raised {type(error).__name__}"
                             f"{': ' + reason if reason else ''} on {spec.label_column} {value!r} (a parser returns "
                             "None for a row it cannot parse: the row is skipped)", spec.name) from None
    texts = zip(*(columns[column] for column in spec.text_columns))  # per row, its text fields
    labels = [None if label is None or not task.kind.label_fits(spec, list(row), label) else label
              for label, row in zip(labels, texts)]
    skipped = [i for i, label in enumerate(labels) if label is None]
    if len(skipped) == len(labels):
        raise file_error(path, None, f"none of the {len(labels)} rows has a valid {spec.label_column!r} label "
                         f"(first: line {lines[0]}, {spec.label_column} {columns[spec.label_column][0]!r})", spec.name)
    if skipped:
        first = skipped[0]
        log.warning("%s: skipped %d of %d rows with a missing, unparsable or mismatched %r label "
                    "(first: line %d, id %s)", path.name, len(skipped), len(labels), spec.label_column,
                    lines[first], columns[spec.id_column][first])
    return labels
