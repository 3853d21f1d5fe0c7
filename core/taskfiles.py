"""Reading task files: tab-separated rows checked against their header, errors that name file, line and task.

The CS224N files are tab-separated as released: a header row, a leading unnamed index column (two
in the test-student files), and quoted fields. They are read with Python's csv module (tab delimiter,
``"`` quotes doubled inside a quoted field, as pandas reads them), after one rule that every released
file keeps: a row lies on one line and has as many fields as the header. A file that breaks it (a
stray tab, an extra column, a quote that never closes), is not UTF-8, has no data rows, or repeats or
leaves out an id raises :class:`DataError` as one line ``FILE:LINE: what (task NAME)``, with 1-based
physical line numbers, because reading on would shift columns (sentences read as ids) without a word.
Blank lines are skipped. Labels are parsed by the task; rows whose label is missing or unparsable are
skipped and counted in one warning per file.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path

import datasets

from core.errors import PlatformError
from core.tasks import TaskSpec

log = logging.getLogger("platform")


class DataError(PlatformError):
    """A data folder, file, column or row is not what the task expects."""


def file_error(path: Path, line: int | None, what: str, task: str) -> DataError:
    """``FILE:LINE: what (task NAME)``; without ``line`` for what concerns the whole file."""
    where = f"{path}:{line}" if line is not None else str(path)
    return DataError(f"{where}: {what} (task {task})")


def read_rows(task: TaskSpec, path: Path, *, labelled: bool) -> datasets.Dataset:
    """The rows of one task file: ``id``, the text columns, and ``label`` when ``labelled``."""
    path = Path(path)
    (header_line, header), lines, rows = read_table(path, task.name)
    wanted = [task.id_column, *task.text_columns] + ([task.label_column] if labelled else [])
    missing = [column for column in wanted if column not in header]
    if missing:
        raise file_error(path, header_line, f"missing column(s) {missing}; the header has {header}", task.name)
    repeated = [column for column in wanted if header.count(column) > 1]
    if repeated:
        raise file_error(path, header_line, f"column(s) {repeated} appear more than once in the header {header}",
                         task.name)
    positions = {column: header.index(column) for column in wanted}
    columns = {column: [fields[i] for fields in rows] for column, i in positions.items()}
    check_ids(path, task, lines, columns[task.id_column])
    if labelled:
        labels = parse_labels(path, task, lines, columns)
        del columns[task.label_column]
        keep = [i for i, label in enumerate(labels) if label is not None]
        columns = {column: [values[i] for i in keep] for column, values in columns.items()}
        columns["label"] = [labels[i] for i in keep]
    return datasets.Dataset.from_dict(columns)  # strings, and float64 labels (declaring features is 5x slower)


def read_table(path: Path, task: str) -> tuple[tuple[int, list[str]], list[int], list[list[str]]]:
    """The header (with its line number), and the line number and fields of each data row, of a
    tab-separated UTF-8 file."""
    if not path.is_file():
        raise file_error(path, None, "file not found", task)
    raw = path.read_bytes()
    body = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + len(raw) - len(body)
        start = raw.rfind(b"\n", 0, offset) + 1
        raise file_error(path, raw.count(b"\n", 0, offset) + 1,
                         f"not UTF-8: byte 0x{raw[offset]:02x} at byte {offset - start + 1} of the line "
                         f"(offset {offset} in the file); save the file as UTF-8", task) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True)
    header, header_line, lines, rows = None, 0, [], []
    line = 0  # the last line read so far
    while True:
        first = line + 1
        try:
            fields = next(reader, None)
        except csv.Error as error:
            raise quote_error(path, first, reader.line_num, str(error), task) from None
        if fields is None:
            break
        line = reader.line_num
        if line > first:
            raise quote_error(path, first, line, "", task)
        if not fields:
            continue  # a blank line
        if header is None:
            header, header_line = fields, first
        elif len(fields) != len(header):
            hint = "a stray tab or an extra column" if len(fields) > len(header) else "a missing tab or column"
            raise file_error(path, first, f"{len(fields)} fields where the header (line {header_line}) has "
                             f"{len(header)}: {hint} would shift the columns", task)
        else:
            lines.append(first)
            rows.append(fields)
    if header is None:
        raise file_error(path, None, "empty file: no header row", task)
    if not rows:
        raise file_error(path, None, "no data rows below the header", task)
    return (header_line, header), lines, rows


def quote_error(path: Path, first: int, last: int, reason: str, task: str) -> DataError:
    """A row's quoting is broken: a quote opened on line ``first`` runs on (to line ``last``), or text
    follows a closing quote."""
    if last == first and "expected after" in reason:
        return file_error(path, first, "text after the closing quote of a quoted field (inside a quoted field, "
                          'write a quote as "")', task)
    return file_error(path, first, "a quoted field opens on this line and does not close on it (an unbalanced "
                      '"?); every row must lie on one line', task)


def check_ids(path: Path, task: TaskSpec, lines: list[int], ids: list[str]) -> None:
    """Every row has an id of its own: predictions are matched to examples by id."""
    seen: dict[str, int] = {}
    for line, value in zip(lines, ids):
        if not value.strip():
            raise file_error(path, line, f"empty {task.id_column!r}", task.name)
        if value in seen:
            raise file_error(path, line, f"{task.id_column!r} {value!r} repeats that of line {seen[value]}", task.name)
        seen[value] = line


def parse_labels(path: Path, task: TaskSpec, lines: list[int], columns: dict[str, list[str]]) -> list[float | None]:
    """The label of each row as a float, None where it is missing or unparsable (counted in one warning)."""
    labels = [task.parse_label(text) for text in columns[task.label_column]]
    labels = [None if label is None else float(label) for label in labels]
    skipped = [i for i, label in enumerate(labels) if label is None]
    if len(skipped) == len(labels):
        raise file_error(path, None, f"none of the {len(labels)} rows has a valid {task.label_column!r} label "
                         f"(first: line {lines[0]}, {task.label_column} {columns[task.label_column][0]!r})", task.name)
    if skipped:
        first = skipped[0]
        log.warning("%s: skipped %d of %d rows with a missing or unparsable %r label (first: line %d, id %s)",
                    path.name, len(skipped), len(labels), task.label_column, lines[first],
                    columns[task.id_column][first])
    return labels
