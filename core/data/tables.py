"""Tab-separated tables checked against their header: every error names file and line.

The CS224N files are tab-separated as released: a header row, a leading unnamed index column (two
in the test-student files), and quoted fields. They are read with Python's csv module (tab delimiter,
``"`` quotes doubled inside a quoted field, as pandas reads them), after one rule that every released
file keeps: a row lies on one line and has as many fields as the header. A field may hold up to
:data:`FIELD_LIMIT` characters (far more than the csv module's default). A file that breaks the rule
(a stray tab, an extra column, a quote that never closes), has a longer field, is not UTF-8, has no
data rows, or is a folder or cannot be read raises :class:`DataError` as one line ``FILE:LINE: what
(task NAME)``, with 1-based physical line numbers, because reading on would shift columns (sentences
read as ids) without a word. Blank lines are skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from core.base.errors import PlatformError

# the most characters one field may hold: Python's csv default (131,072) is below a long review or article
# sometimes, and a field of this size is surely not one sentence or document of a task file any more
FIELD_LIMIT = 10_000_000


class DataError(PlatformError):
    """A data folder, file, column or row is not what the task expects."""


def file_error(path: Path, line: int | None, what: str, task: str) -> DataError:
    """``FILE:LINE: what (task NAME)``; without ``line`` for what concerns the whole file."""
    where = f"{path}:{line}" if line is not None else str(path)
    return DataError(f"{where}: {what} (task {task})")


def read_table(path: Path, task: str) -> tuple[tuple[int, list[str]], list[int], list[list[str]]]:
    """The header (with its line number), and the line number and fields of each data row, of a
    tab-separated UTF-8 file."""
    raw = read_bytes(path, task)
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
    limit = csv.field_size_limit(FIELD_LIMIT)  # a process-wide setting: restored below
    try:
        while True:
            first = line + 1
            try:
                fields = next(reader, None)
            except csv.Error as error:
                if reader.line_num == first and "field limit" in str(error):
                    raise file_error(path, first, f"a field longer than {FIELD_LIMIT:,} characters, the most one "
                                     "field of a task file may hold; split the text, or check that the line is "
                                     "what it should be", task) from None
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
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise file_error(path, None, "empty file: no header row", task)
    if not rows:
        raise file_error(path, None, "no data rows below the header", task)
    return (header_line, header), lines, rows


def check_file(path: Path, task: str) -> None:
    """A task file must be there, and be a file (not a folder)."""
    if path.is_dir():
        raise file_error(path, None, "a folder, not a task file", task)
    if not path.is_file():
        raise file_error(path, None, "file not found", task)


def unreadable(path: Path, error: OSError, task: str) -> DataError:
    return file_error(path, None, f"cannot read the file ({error.strerror or error}); check its permissions and the "
                      "disk it is on", task)


def read_bytes(path: Path, task: str) -> bytes:
    """The bytes of a task file; a missing file, a folder or a file that cannot be read is named."""
    check_file(path, task)
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(path, error, task) from None


def quote_error(path: Path, first: int, last: int, reason: str, task: str) -> DataError:
    """A row's quoting is broken: a quote opened on line ``first`` runs on (to line ``last``), or text
    follows a closing quote."""
    if last == first and "expected after" in reason:
        return file_error(path, first, "text after the closing quote of a quoted field (inside a quoted field, "
                          'write a quote as "")', task)
    return file_error(path, first, "a quoted field opens on this line and does not close on it (an unbalanced "
                      '"?); every row must lie on one line', task)
