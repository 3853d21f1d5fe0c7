"""core.testing.tiny_data: the tiny synthetic task files are what the generator writes, read under the
built-in tasks, and keep the release's format (names, headers, columns) file by file."""

import csv

import pytest

from core.tasks.files import read_rows
from core.testing.tiny_data import ROWS, write
from tasks import cfimdb, quora, sst, sts
from tests.helpers import bind_tasks

SST, CFIMDB, QUORA, STS = bind_tasks(sst.SST, cfimdb.CFIMDB, quora.QUORA, sts.STS).values()


def test_the_generator_writes_the_same_bytes_every_time(tmp_path, tiny_data_dir):
    written = write(tmp_path)
    assert sorted(path.name for path in written) == sorted(path.name for path in tiny_data_dir.iterdir())
    for path in written:
        assert path.read_bytes() == (tiny_data_dir / path.name).read_bytes(), path.name


@pytest.mark.parametrize("task", [SST, CFIMDB, QUORA, STS], ids=lambda task: task.name)
def test_every_file_reads_under_its_task(task, tiny_data_dir):
    for split, name in task.spec.files.items():
        rows = read_rows(task, tiny_data_dir / name, labelled=split != "test")
        skipped = 1 if name == "quora-dev.csv" else 0  # the release's row without a second question or label
        assert len(rows) == ROWS[split] - skipped and all(text.strip() for column in rows.texts for text in column)
    labels = read_rows(task, tiny_data_dir / task.spec.files["train"], labelled=True).labels
    if task.kind.name == "pair-regression":
        assert 0.0 <= min(labels) < 1.0 and 4.0 < max(labels) <= 5.0 and any(not label.is_integer() for label in labels)
    else:
        assert set(labels) == set(range(max(2, task.spec.num_labels)))  # every class


def header_and_widths(path):
    with open(path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))
    return lines[0], {len(fields) for fields in lines[1:]}


def test_the_files_keep_the_releases_names_headers_and_columns(data_dir, tiny_data_dir):
    assert sorted(path.name for path in tiny_data_dir.iterdir()) == sorted(path.name for path in data_dir.iterdir()
                                                                          if path.suffix == ".csv")
    for path in sorted(tiny_data_dir.iterdir()):
        ours, theirs = header_and_widths(path), header_and_widths(data_dir / path.name)
        assert ours[0] == theirs[0] and ours[1] == {len(ours[0])} == theirs[1], path.name
        first = [line.split("\t")[:2] for line in path.read_text().splitlines()[1:3]]
        if path.name.endswith("test-student.csv") and path.name.startswith("ids-"):  # two index columns
            assert first == [["1", "0.0"], ["2", "1.0"]]
        else:
            assert all(index.isdigit() and len(identifier) == 25 for index, identifier in first)
