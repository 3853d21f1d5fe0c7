"""Reading the CS224N files as released: quirks, skipped rows, errors, and the tokenization cache."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.data.folders import resolve_data_dir
from core.data.tables import DataError
from core.tasks.files import read_rows
from core.tasks.spec import TaskSpec
from core.tasks.splits import load_split
from tasks import cfimdb, quora, sst, sts
from tests.helpers import bind_tasks, counting_tokenizer

SST, CFIMDB, QUORA, STS = bind_tasks(sst.SST, cfimdb.CFIMDB, quora.QUORA, sts.STS).values()


@pytest.fixture(scope="module")
def tokenizer():
    from core.data.tokenizer import Tokenizer
    from core.encoder.loading import resolve_checkpoint

    source = resolve_checkpoint("tiny")
    return Tokenizer(source.vocab, lowercase=source.lowercase)


ALL_FILES = [(SST, "train", 7544), (SST, "dev", 1101), (SST, "test", 2210), (CFIMDB, "train", 1507),
             (CFIMDB, "dev", 245), (CFIMDB, "test", 488), (QUORA, "train", 12007), (QUORA, "dev", 20212),
             (STS, "train", 5240), (STS, "dev", 863), (STS, "test", 1725)]


@pytest.mark.parametrize("task,split,rows", ALL_FILES)
def test_reads_every_row(data_dir, task, split, rows):
    data = read_rows(task, data_dir / task.spec.files[split], labelled=split != "test")
    assert len(data) == len(data.ids) == len(data.lines) == rows
    assert len(data.texts) == len(task.spec.text_columns) and all(len(column) == rows for column in data.texts)
    assert (data.labels is None) == (split == "test")


@pytest.mark.parametrize("task,split,rows", ALL_FILES)
def test_reads_what_pandas_reads(data_dir, task, split, rows):
    """The rows are those pandas reads (what datasets' CSV builder, the reader before, is made of)."""
    import pandas

    spec = task.spec
    path = data_dir / spec.files[split]
    data = read_rows(task, path, labelled=split != "test")
    frame = pandas.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if split != "test":
        frame = frame[[task.parse_label(label) is not None for label in frame[spec.label_column]]]
        assert data.labels == [task.parse_label(label) for label in frame[spec.label_column]]
    assert data.ids == frame[spec.id_column].tolist()
    for column, values in zip(spec.text_columns, data.texts):
        assert values == frame[column].tolist()


def test_labels_are_parsed_into_the_label_space(data_dir):
    sst = read_rows(SST, data_dir / SST.spec.files["dev"], labelled=True)
    assert set(sst.labels) == {0, 1, 2, 3, 4} and all(isinstance(label, int) for label in sst.labels)
    sts = read_rows(STS, data_dir / STS.spec.files["dev"], labelled=True)
    assert min(sts.labels) >= 0.0 and max(sts.labels) <= 5.0 and all(isinstance(label, float) for label in sts.labels)
    assert any(not label.is_integer() for label in sts.labels)  # float labels stay float


def test_rows_with_missing_labels_are_skipped_with_one_warning(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="platform"):
        rows = read_rows(QUORA, data_dir / "quora-dev.csv", labelled=True)
    assert len(rows) == 20214 - 2
    warnings = [r.getMessage() for r in caplog.records if "quora-dev.csv" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 of 20214 rows" in warnings[0] and "(first: line 2577, id " in warnings[0]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError) as error:
        read_rows(SST, tmp_path / "ids-sst-train.csv", labelled=True)
    assert str(error.value) == f"{tmp_path / 'ids-sst-train.csv'}: file not found (task sst)"


def test_missing_column_names_file_and_header(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("\tid\tquestion1\tquestion2\tis_duplicate\n0\ta\tx\ty\t1\n")
    with pytest.raises(DataError) as error:
        read_rows(QUORA, path, labelled=True)
    assert str(error.value) == (f"{path}:1: missing column(s) ['sentence1', 'sentence2']; the header has "
                                "['', 'id', 'question1', 'question2', 'is_duplicate'] (task quora)")


def test_third_party_file_format(tmp_path, tokenizer):
    path = tmp_path / "nli-train.csv"
    path.write_text('id\tpremise\thypothesis\tlabel\n'
                    'a\tA man sleeps.\tA person rests.\t1\n'
                    'b\t"He said ""no"""\tHe agreed.\t0\n'
                    'c\tbroken row\tno label\tmaybe\n')
    spec = TaskSpec(name="nli", kind="pair-classification", files={"train": str(path), "dev": str(path)},
                    text_columns=("premise", "hypothesis"), num_labels=2)
    data = load_split(bind_tasks(spec)["nli"], "train", data_dir=tmp_path, tokenizer=tokenizer, max_length=16)
    assert data.ids == ["a", "b"] and data.labels.tolist() == [1, 0]
    assert tokenizer.decode(data.sequences[0][1]) == 'he said " no "'


def test_tokenization_is_cached(tiny_data_dir, tokenizer):
    counting = counting_tokenizer(tokenizer)
    first = load_split(STS, "dev", data_dir=tiny_data_dir, tokenizer=counting, max_length=40, limit=20)
    calls = counting.calls
    assert calls > 0
    second = load_split(STS, "dev", data_dir=tiny_data_dir, tokenizer=counting, max_length=40, limit=20)
    assert counting.calls == calls, "second load tokenized again"
    assert first.sequences == second.sequences and first.ids == second.ids
    load_split(STS, "dev", data_dir=tiny_data_dir, tokenizer=counting, max_length=41, limit=20)
    assert counting.calls > calls, "a different max_length must not reuse the cache"


def test_a_file_edited_to_the_same_size_and_time_is_encoded_afresh(tmp_path, tokenizer):
    """The token cache is keyed by the rows' content: an edit that keeps the file's size and modification
    time (a fast editor, a restored timestamp, a copy within the same second) must not serve stale ids."""
    path = tmp_path / "ids-sst-dev.csv"
    path.write_text("\tid\tsentence\tsentiment\n0\ta1\t a good film .\t3\n1\ta2\t a long story .\t1\n")
    task = SST.with_files({"train": path.name, "dev": path.name})
    before = load_split(task, "dev", data_dir=tmp_path, tokenizer=tokenizer, max_length=16)
    assert tokenizer.decode(before.sequences[0][0]) == "a good film."
    stat = path.stat()
    path.write_text(path.read_text().replace(" good ", " dull "))  # the same number of bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = load_split(task, "dev", data_dir=tmp_path, tokenizer=tokenizer, max_length=16)
    assert tokenizer.decode(after.sequences[0][0]) == "a dull film."
    assert after.sequences[0][1] == before.sequences[0][1]  # the row that did not change


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir(), env.mkdir()
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(env))
    assert resolve_data_dir(flag) == flag
    assert resolve_data_dir() == env
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"looked at: \$PLATFORM_DATA_DIR=.*missing.*--data-dir"):
        resolve_data_dir()
    monkeypatch.delenv("PLATFORM_DATA_DIR")
    with pytest.raises(DataError, match="looked at: --data-dir .*nowhere"):
        resolve_data_dir(tmp_path / "nowhere")


@pytest.mark.integration
def test_missing_data_fails_under_ci(tmp_path):
    """Without the data its tests are skipped, but under CI (CI=true) they fail: a suite without data cannot pass."""
    env = os.environ | {"CI": "true", "PLATFORM_DATA_DIR": str(tmp_path / "missing")}
    test = f"{__file__}::test_labels_are_parsed_into_the_label_space"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], env=env,
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert result.returncode == 1 and "1 error" in result.stdout, result.stdout[-2000:]
    assert "CS224N data not available under CI=true" in result.stdout
