"""Malformed task files: one line naming file, line and task, from read_rows and from the command line.

The files are written here in the released layout (tests/tasks/test_task_files.py reads the real ones):
a header with an unnamed index column (two in test files), a tab between fields, sentences that start
with a space, and ids of 25 hex digits.
"""

import csv
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from core.cli.main import main
from core.data.tables import FIELD_LIMIT, DataError
from core.tasks.files import read_rows
from tasks import sst, sts
from tests.helpers import bind_tasks

SST, STS = bind_tasks(sst.SST, sts.STS).values()

WORDS = "the a film movie good bad great dull funny long story acting plot ending scenes cast".split()
FIELDS = "5 fields where the header (line 1) has 4: a stray tab or an extra column would shift the columns"
QUOTE = 'a quoted field opens on this line and does not close on it (an unbalanced "?); every row must lie on one line'


def sst_lines(split: str, rows: int = 12, seed: int = 0) -> list[bytes]:
    """An SST file as released: ``\\tid\\tsentence\\tsentiment``, or ``0\\t\\tid\\tsentence`` for test."""
    rng = random.Random(f"{split}{seed}")
    lines = [b"0\t\tid\tsentence" if split == "test" else b"\tid\tsentence\tsentiment"]
    for i in range(rows):
        ident = "".join(rng.choice("0123456789abcdef") for _ in range(25))
        sentence = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " ."
        fields = [str(i), f"{float(i)}", ident, sentence] if split == "test" else [str(i), ident, sentence, str(i % 5)]
        lines.append("\t".join(fields).encode())
    return lines


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def stray_tab(line: bytes) -> bytes:
    return line.replace(b"\t ", b"\t\t ", 1)


def extra_column(line: bytes) -> bytes:
    return line + b"\textra"


def open_quote(line: bytes) -> bytes:
    return line.replace(b"\t ", b'\t" ', 1)


def bad_byte(line: bytes) -> bytes:
    return line.replace(b"\t ", b"\t \xff", 1)  # before the sentence's first word: byte 30 of the line


def broken(split: str, line: int, how) -> list[bytes]:
    lines = sst_lines(split)
    lines[line - 1] = how(lines[line - 1])
    return lines


# --------------------------------------------------------------------------------------------------
# read_rows
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [2, 7], ids=["first row", "later row"])
@pytest.mark.parametrize("split,how,what", [
    ("test", stray_tab, FIELDS), ("dev", stray_tab, FIELDS), ("dev", extra_column, FIELDS),
    ("test", extra_column, FIELDS), ("dev", open_quote, QUOTE), ("test", open_quote, QUOTE),
], ids=["stray tab, test", "stray tab, dev", "extra column, dev", "extra column, test", "open quote, dev",
        "open quote, test"])
def test_a_broken_row_is_named_by_file_and_line(tmp_path, split, how, what, line):
    path = write(tmp_path / SST.spec.files[split], broken(split, line, how))
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=split != "test")
    assert str(error.value) == f"{path}:{line}: {what} (task sst)"


@pytest.mark.parametrize("line", [2, 7], ids=["first row", "later row"])
def test_invalid_utf8_names_line_and_byte(tmp_path, line):
    lines = broken("dev", line, bad_byte)
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=True)
    offset = path.read_bytes().index(b"\xff")
    if line == 2:
        assert offset == 52  # after line 1 (23 bytes) and "0\t", 25 hex digits, "\t "
    assert str(error.value) == (f"{path}:{line}: not UTF-8: byte 0xff at byte 30 of the line (offset {offset} in the "
                                f"file); save the file as UTF-8 (task sst)")


def test_a_missing_field_is_named(tmp_path):
    lines = sst_lines("dev")
    lines[4] = lines[4].rsplit(b"\t", 1)[0]
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError, match=rf"^{path}:5: 3 fields where the header \(line 1\) has 4: a missing tab or "
                                        r"column would shift the columns \(task sst\)$"):
        read_rows(SST, path, labelled=True)


def test_a_quote_left_open_on_the_last_line_is_named(tmp_path):
    lines = sst_lines("dev")
    lines[-1] = open_quote(lines[-1])
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=True)
    assert str(error.value) == f"{path}:{len(lines)}: {QUOTE} (task sst)"


def test_text_after_a_closing_quote_is_named(tmp_path):
    lines = sst_lines("dev")
    lines[3] = lines[3].replace(b"\t ", b'\t"quoted" ', 1)
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=True)
    assert str(error.value) == (f'{path}:4: text after the closing quote of a quoted field (inside a quoted field, '
                                f'write a quote as "") (task sst)')


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_a_file_without_rows_is_named(tmp_path, split):
    path = write(tmp_path / SST.spec.files[split], sst_lines(split)[:1])
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=split != "test")
    assert str(error.value) == f"{path}: no data rows below the header (task sst)"
    path.write_bytes(b"")
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=split != "test")
    assert str(error.value) == f"{path}: empty file: no header row (task sst)"


def test_ids_must_be_present_and_distinct(tmp_path):
    lines = sst_lines("test")
    lines[5] = lines[5].replace(lines[5].split(b"\t")[2], lines[3].split(b"\t")[2])
    path = write(tmp_path / "ids-sst-test-student.csv", lines)
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=False)
    ident = lines[3].split(b"\t")[2].decode()
    assert str(error.value) == f"{path}:6: 'id' {ident!r} repeats that of line 4 (task sst)"
    lines = sst_lines("test")
    lines[2] = lines[2].replace(lines[2].split(b"\t")[2], b"")
    write(path, lines)
    with pytest.raises(DataError, match=rf"^{path}:3: empty 'id' \(task sst\)$"):
        read_rows(SST, path, labelled=False)


def test_a_file_without_one_valid_label_is_named(tmp_path):
    lines = [line.rsplit(b"\t", 1)[0] + b"\tpositive" for line in sst_lines("dev")]
    lines[0] = sst_lines("dev")[0]
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=True)
    assert str(error.value) == (f"{path}: none of the 12 rows has a valid 'sentiment' label "
                                f"(first: line 2, sentiment 'positive') (task sst)")


def test_line_numbers_are_physical_lines(tmp_path):
    lines = sst_lines("dev")
    lines[6] = stray_tab(lines[6])
    lines[2:2] = [b"", b""]  # blank lines are skipped, and counted
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    with pytest.raises(DataError, match=rf"^{path}:9: 5 fields"):
        read_rows(SST, path, labelled=True)


def test_a_field_beyond_pythons_csv_limit_is_read_as_any_field(tmp_path):
    """Python's csv module stops at 131,072 characters a field; a long document is a field like any other."""
    long = " " + " ".join(["word"] * 40_000) + " ."  # 200,003 characters
    lines = sst_lines("dev")
    fields = lines[3].split(b"\t")
    lines[3] = b"\t".join([*fields[:2], long.encode(), fields[3]])
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    limit = csv.field_size_limit()
    rows = read_rows(SST, path, labelled=True)
    assert rows.texts[0][2] == long and len(rows) == 12
    assert csv.field_size_limit() == limit  # the process-wide setting is left as it was


def test_a_field_beyond_the_largest_sane_size_is_named_not_taken_for_a_quote(tmp_path, capsys):
    lines = sst_lines("dev", 24)
    fields = lines[5].split(b"\t")
    lines[5] = b"\t".join([*fields[:2], b" " + b"x" * (FIELD_LIMIT + 1), fields[3]])
    data = data_folder(tmp_path / "data", "dev", lines)
    path = data / SST.spec.files["dev"]
    what = (f"{path}:6: a field longer than {FIELD_LIMIT:,} characters, the most one field of a task file may "
            "hold; split the text, or check that the line is what it should be (task sst)")
    with pytest.raises(DataError) as error:
        read_rows(SST, path, labelled=True)
    assert str(error.value) == what
    code, err = run_cli(capsys, "run", "--tasks", "sst", *TINY, "--data-dir", data, "--output-dir", tmp_path / "run")
    assert code == 2 and one_error_line(err, "run") == f"platform run: error: {what}"


class StrictKind(type(SST.kind)):
    def parse_label(self, spec, value):
        return int(value)  # raises on a value that is not an integer


def test_a_label_parser_that_raises_is_named_with_file_line_and_task(tmp_path):
    lines = sst_lines("dev")
    lines[4] = lines[4].rsplit(b"\t", 1)[0] + b"\tpositive"
    path = write(tmp_path / "ids-sst-dev.csv", lines)
    task = attrs.evolve(SST, kind=StrictKind())
    what = (f"parse_label of task kind {SST.kind.name!r} ({__name__}) raised ValueError: invalid literal for int() "
            "with base 10: 'positive'")
    with pytest.raises(DataError) as error:
        read_rows(task, path, labelled=True)
    assert str(error.value) == (f"{path}:5: the task's {what} on sentiment 'positive' (a parser returns None for a "
                                "row it cannot parse: the row is skipped) (task sst)")


def test_what_the_csv_reference_reads_is_read_the_same(tmp_path):
    """Quoted fields may hold tabs and doubled quotes; a byte-order mark and CRLF line ends are fine; blank
    lines are skipped. Rows are what Python's csv module (tab delimiter) reads, as pandas does."""
    text = ('\ufeffid\tsentence1\tsentence2\tsimilarity\r\n'
            'a1\t"A tab\there"\t"He said ""no"""\t4.5\r\n'
            '\r\n'
            'b2\tplain\tQuote "inside" a field\t0\r\n')
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8", newline="")
    rows = read_rows(STS, path, labelled=True)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reference = [row for row in csv.reader(handle, delimiter="\t") if row][1:]
    assert rows.ids == ["a1", "b2"] == [row[0] for row in reference]
    assert rows.texts[0] == ["A tab\there", "plain"] == [row[1] for row in reference]
    assert rows.texts[1] == ['He said "no"', 'Quote "inside" a field'] == [row[2] for row in reference]
    assert rows.labels == [4.5, 0.0] and rows.lines == [2, 4]


# --------------------------------------------------------------------------------------------------
# Through the command line: exit status 2, one line on stderr, no traceback
# --------------------------------------------------------------------------------------------------

TINY = ["--checkpoint", "tiny", "--limit", "16", "--batch-size", "8", "--max-length", "24", "--threads", "1",
        "--sampler", "rrobin"]
CASES = {  # name: (how, line, message after "FILE:LINE: ")
    "stray tab, first row": (stray_tab, 2, FIELDS), "stray tab, later row": (stray_tab, 7, FIELDS),
    "extra column, first row": (extra_column, 2, FIELDS), "extra column, later row": (extra_column, 7, FIELDS),
    "open quote, first row": (open_quote, 2, QUOTE), "open quote, later row": (open_quote, 7, QUOTE),
    "bad byte, first row": (bad_byte, 2, "not UTF-8: byte 0xff at byte "),
    "bad byte, later row": (bad_byte, 7, "not UTF-8: byte 0xff at byte "),
}


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_error_line(err: str, command: str) -> str:
    """The error line, checked to be the only one and the last (progress bars may come before it)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], err
    line = errors[0]
    return line[line.index(f"platform {command}: error: "):]


def data_folder(folder: Path, broken_split: str | None = None, lines: list[bytes] | None = None) -> Path:
    """SST train, dev and test files in ``folder``; ``broken_split`` gets ``lines`` instead."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in SST.spec.files.items():
        write(folder / name, lines if split == broken_split else sst_lines(split, 24))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SST run on files written like the released ones (no need of the real data)."""
    root = tmp_path_factory.mktemp("taskfiles")
    assert main(["run", "--tasks", "sst", *TINY, "--epochs", "1", "--data-dir", str(data_folder(root / "data")),
                 "--output-dir", str(root / "run")]) == 0
    return root / "run"


def test_predicted_ids_are_the_test_file_ids(capsys, trained, tmp_path):
    data = data_folder(tmp_path / "data")
    assert run_cli(capsys, "predict", trained, "--data-dir", data, "--out", tmp_path / "preds")[0] == 0
    with open(data / SST.spec.files["test"], newline="") as handle:
        ids = [row[2] for row in csv.reader(handle, delimiter="\t")][1:]
    written = (tmp_path / "preds" / "sst-test-output.csv").read_text().splitlines()[1:]
    predicted = [line.split(" , ")[0] for line in written]
    assert len(predicted) == 16  # --limit 16: a sample of the file's rows, in file order
    assert predicted == [i for i in ids if i in set(predicted)]


@pytest.mark.parametrize("case", CASES)
def test_predict_names_a_broken_test_file(capsys, trained, tmp_path, case):
    how, line, what = CASES[case]
    data = data_folder(tmp_path / "data", "test", broken("test", line, how))
    code, err = run_cli(capsys, "predict", trained, "--data-dir", data, "--out", tmp_path / "preds")
    assert code == 2
    message = one_error_line(err, "predict")
    assert message.startswith(f"platform predict: error: {data / SST.spec.files['test']}:{line}: {what}")
    assert message.endswith(" (task sst)")
    assert not (tmp_path / "preds").exists(), "nothing is written when a file is broken"


@pytest.mark.parametrize("case", CASES)
def test_evaluate_names_a_broken_file(capsys, trained, tmp_path, case):
    how, line, what = CASES[case]
    path = write(tmp_path / "my-sst.csv", broken("dev", line, how))
    code, err = run_cli(capsys, "evaluate", trained, "--file", path, "--task", "sst")
    assert code == 2
    message = one_error_line(err, "evaluate")
    assert message.startswith(f"platform evaluate: error: {path}:{line}: {what}") and message.endswith(" (task sst)")


@pytest.mark.parametrize("split", ["train", "dev"])
@pytest.mark.parametrize("case", ["stray tab, later row", "open quote, first row", "header only"])
def test_run_names_a_broken_file(capsys, tmp_path, split, case):
    if case == "header only":
        lines, what = sst_lines(split)[:1], "{path}: no data rows below the header (task sst)"
    else:
        how, line, text = CASES[case]
        lines, what = broken(split, line, how), f"{{path}}:{line}: {text} (task sst)"
    data = data_folder(tmp_path / "data", split, lines)
    code, err = run_cli(capsys, "run", "--tasks", "sst", *TINY, "--data-dir", data, "--output-dir", tmp_path / "run")
    assert code == 2
    assert one_error_line(err, "run") == "platform run: error: " + what.format(path=data / SST.spec.files[split])
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.integration
def test_the_command_prints_one_line(trained, tmp_path):
    """The real command in a process of its own, progress bars off: stderr is the one error line."""
    data = data_folder(tmp_path / "data", "test", broken("test", 2, stray_tab))
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run([sys.executable, "-m", "core.cli", "predict", str(trained), "--data-dir", str(data)],
                            capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).parents[2])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"platform predict: error: {data / SST.spec.files['test']}:2: {FIELDS} (task sst)\n"


def test_a_task_file_that_is_a_folder_is_named(capsys, trained, tmp_path):
    data = data_folder(tmp_path / "data")
    folder = data / SST.spec.files["dev"]
    folder.unlink()
    folder.mkdir()
    code, err = run_cli(capsys, "run", "--tasks", "sst", *TINY, "--data-dir", data, "--output-dir", tmp_path / "run")
    assert code == 2 and one_error_line(err, "run") == f"platform run: error: {folder}: a folder, not a task file (task sst)"
    code, err = run_cli(capsys, "evaluate", trained, "--file", data, "--task", "sst")
    assert code == 2 and one_error_line(err, "evaluate") == f"platform evaluate: error: {data}: a folder, not a task file (task sst)"


def test_a_task_file_that_cannot_be_read_is_named(trained, tmp_path):
    """A file whose reading fails (an I/O error: a bad disk, a network share gone): /proc/self/mem is a file
    that no one, root included, can read from its start, so this fails alike whoever runs the tests."""
    unreadable = tmp_path / "my-sst.csv"
    unreadable.symlink_to("/proc/self/mem")
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run([sys.executable, "-m", "core.cli", "evaluate", str(trained), "--file", str(unreadable),
                             "--task", "sst"], capture_output=True, text=True, env=env, timeout=120,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    # evaluate names the file by its resolved path, here /proc/PID/mem
    assert re.fullmatch(r"platform evaluate: error: (/proc/\d+/mem|.*/my-sst\.csv): cannot read the file "
                        r"\(Input/output error\); check its permissions and the disk it is on \(task sst\)\n",
                        result.stderr), result.stderr
