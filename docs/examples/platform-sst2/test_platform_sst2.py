"""The plugin's own tests, as its author writes them: the platform's pytest plugin, installed with the
platform, gives the fixtures (``tiny_data_dir``: tiny synthetic files named as the CS224N release's;
``train_tiny``: a one-epoch run on the tiny random-init encoder, on the CPU, in seconds)."""

import csv

import platform_sst2


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fold(value):
    return platform_sst2.FOLD.get(value.strip())


def test_the_map_keeps_clear_sentiment_and_leaves_neutral_out():
    folded = [fold(value) for value in ("0", "1", "2", "3", "4", "5", "")]
    assert folded == [0, 0, None, 1, 1, None, None]


def test_the_sst_files_hold_rows_of_both_folded_classes(tiny_data_dir):
    assert {fold(row["sentiment"]) for row in rows(tiny_data_dir / "ids-sst-train.csv")} == {0, 1, None}


def test_sst2_trains_beside_a_built_in_task_and_predicts_binary_labels(train_tiny, tiny_data_dir):
    run = train_tiny("sst2", "sts", register=[platform_sst2])
    assert 0.0 <= run.best["sst2"] <= 1.0 and "sts" in run.best
    lines = (run.folder / "predictions" / "sst2-dev-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_Sentiment " and len(lines) > 1
    predicted = dict(tuple(part.strip() for part in line.split(" , ")) for line in lines[1:])
    dev = rows(tiny_data_dir / "ids-sst-dev.csv")
    kept = {row["id"] for row in dev if fold(row["sentiment"]) is not None}
    assert set(predicted) <= kept and set(predicted.values()) <= {"0", "1"}  # neutral sentences are not predicted
