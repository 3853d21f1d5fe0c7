"""The built-in task kinds: every kind end to end on the tiny encoder (train, evaluate, predict, resume), float
labels, labels that are never cached (token tagging itself: test_tagging.py; SMART's divergences of their head
outputs: test_smart.py)."""

import csv
import math
import random
from pathlib import Path

import attrs
import pytest
import torch

from core.build import trained as inference
from core.build.run import prepare
from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import Registries
from core.experiment.config import RunConfig
from core.tasks.files import read_rows
from core.tasks.spec import TaskSpec
from core.tasks.splits import load_split
from core.train.loop import train
from tests.helpers import bind_tasks, counting_tokenizer

# ---------------------------------------------------------------------------------------------------
# Synthetic task files of the kinds the CS224N data has no task of, written as the release writes its
# files: tab-separated, a leading unnamed index column, '"' quotes (doubled inside) where a field needs them
# ---------------------------------------------------------------------------------------------------

WORDS = ("good", "bad", "film", "plot", "actor", "dull", "bright", "night", "city", "of", "paris", "anna", "lee")
PLACES, NAMES = {"paris", "city"}, {"anna", "lee"}


def files(name: str) -> dict[str, str]:
    return {split: f"{name}-{split}.csv" for split in ("train", "dev", "test")}


SYNTHETIC = (
    TaskSpec(name="rate", kind="single-regression", files=files("rate"), text_columns=("sentence",),
             label_column="score", label_range=(0.0, 10.0)),
    TaskSpec(name="nli", kind="cross-pair-classification", files=files("nli"), text_columns=("premise", "hypothesis"),
             labels=("entailment", "neutral", "contradiction")),
    TaskSpec(name="relate", kind="cross-pair-regression", files=files("relate"), text_columns=("sentence1", "sentence2"),
             label_column="similarity", label_range=(0.0, 5.0)),
    TaskSpec(name="chunks", kind="token-tagging", files=files("chunks"), text_columns=("tokens",), label_column="tags",
             labels=("O", "B-place", "I-place", "B-name", "I-name")),
)
SPECS = {spec.name: spec for spec in SYNTHETIC}


def words(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]


def tags(sentence: list[str]) -> list[str]:
    """BIO tags of the place and name words, a run of one type being one entity."""
    out, previous = [], None
    for word in sentence:
        kind = "place" if word in PLACES else "name" if word in NAMES else None
        out.append("O" if kind is None else f"{'I' if kind == previous else 'B'}-{kind}")
        previous = kind
    return out


def row(task: str, rng: random.Random) -> tuple[list[str], str]:
    """The text fields and the label of one example of ``task``."""
    a, b = words(rng), words(rng)
    if task == "rate":  # the share of "good" words, on 0-10; an integral score written as "3", others as "7.5"
        return [" ".join(a)], f"{10 * a.count('good') / len(a):g}"
    if task == "nli":
        return [" ".join(a), " ".join(b)], rng.choice(SPECS["nli"].labels)
    if task == "relate":
        return [" ".join(a), " ".join(b)], f"{5 * len(set(a) & set(b)) / len(set(a) | set(b)):.3f}"
    return [" ".join(a)], " ".join(tags(a))


def write_task(folder: Path, spec: TaskSpec, sizes=(("train", 30), ("dev", 24), ("test", 12))) -> None:
    rng = random.Random(spec.name)
    for split, size in sizes:
        with open(folder / spec.files[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            header = ["", spec.id_column, *spec.text_columns] + ([spec.label_column] if split != "test" else [])
            writer.writerow(header)
            for i in range(size):
                texts, label = row(spec.name, rng)
                if i == 1 and spec.kind != "token-tagging":
                    texts[0] = f'anna says "{texts[0]}"'  # a quoted field with quotes inside
                writer.writerow([i, f"{spec.name}-{split}-{i}", *texts] + ([label] if split != "test" else []))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic-tasks")
    for spec in SYNTHETIC:
        write_task(folder, spec)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    from core.data.tokenizer import Tokenizer
    from core.encoder.loading import resolve_checkpoint

    source = resolve_checkpoint("tiny")
    return Tokenizer(source.vocab, lowercase=source.lowercase)


def test_the_synthetic_files_keep_the_release_quoting(synthetic_dir):
    line = (synthetic_dir / "rate-train.csv").read_text().splitlines()[2]
    assert line.split("\t")[2].startswith('"anna says ""') and line.count("\t") == 3


# ---------------------------------------------------------------------------------------------------
# End to end on the tiny encoder: every built-in kind trains, evaluates, predicts and resumes
# ---------------------------------------------------------------------------------------------------

END_TO_END = [("sst", "single-classification"), ("rate", "single-regression"), ("quora", "pair-classification"),
              ("sts", "pair-regression"), ("nli", "cross-pair-classification"), ("relate", "cross-pair-regression"),
              ("chunks", "token-tagging")]


class SyntheticTasks:
    @hookimpl
    def platform_tasks(self):
        return [Component.of(spec) for spec in SYNTHETIC]


class Interrupted(Exception):
    pass


class InterruptAt:
    """Stops training right after global step ``step``, before that step's checkpoint."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def platform_on_after_step(self, run, step):
        if step == self.step:
            raise Interrupted(step)


def fixture_pm(*plugins):
    """A fresh plugin manager with the built-ins, the synthetic tasks and ``plugins``."""
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(SyntheticTasks(), name="synthetic-tasks")
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_the_end_to_end_tasks_cover_every_built_in_kind():
    registries = Registries(fixture_pm())
    assert {kind for _, kind in END_TO_END} == set(registries.task_kinds.names())
    assert all(registries.tasks[task].factory.kind == kind for task, kind in END_TO_END)


def check_prediction(spec: TaskSpec, value: str, texts: list[str]) -> None:
    """One prediction as the prediction file writes it, in the task's label space."""
    if spec.kind in ("single-classification", "pair-classification", "cross-pair-classification"):
        assert int(value) in range(max(2, spec.num_labels))
    elif spec.kind == "token-tagging":
        assert len(value.split()) == len(texts[0].split()) and set(value.split()) <= set(spec.labels)
    else:
        assert len(value.partition(".")[2]) == 4 and math.isfinite(float(value))


@pytest.mark.slow
@pytest.mark.parametrize("task, kind", END_TO_END)
def test_every_kind_trains_evaluates_predicts_and_resumes(task, kind, request, tmp_path):
    data_dir = request.getfixturevalue("synthetic_dir" if task in SPECS else "tiny_data_dir")
    config = RunConfig(tasks=(task,), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16, max_length=32,
                       epochs=2, lr=1e-3, sampler="rrobin", save_every=1, log_every=1, data_dir=str(data_dir),
                       output_dir=str(tmp_path / "reference"), threads=1, device="cpu", precision="fp32")
    reference = train(prepare(config, fixture_pm()))
    assert set(reference) >= {"epoch", task, "mean"} and math.isfinite(reference[task])

    # Stopped after the second epoch's second step (3 steps of 8 per epoch): resumed from the first step's
    # checkpoint, it ends where the uninterrupted run ended.
    out = tmp_path / "stopped"
    config = attrs.evolve(config, output_dir=str(out))
    run = prepare(config, fixture_pm(InterruptAt(5)))
    with pytest.raises(Interrupted):
        train(run)
    run.close()
    resumed = prepare(config, fixture_pm(), resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    assert train(resumed) == reference

    # `platform evaluate`: the best model's dev metrics again
    metrics = inference.evaluate_checkpoint(out, pm=fixture_pm())
    assert metrics == {name: value for name, value in reference.items() if name != "epoch"}

    # `platform predict`: the dev predictions the run wrote with its best model, and the test ones
    written = inference.predict_checkpoint(out, out=tmp_path / "predicted", pm=fixture_pm())
    spec = resumed.model.tasks[task].spec
    assert [path.name for path in written] == [f"{task}-{split}-output.csv" for split in ("dev", "test")
                                               if split in spec.files]
    dev = written[0].read_text()
    assert dev == (out / "predictions" / f"{task}-dev-output.csv").read_text()
    for path in written:
        split = path.name.split("-")[-2]
        data = load_split(resumed.model.tasks[task], split, data_dir=data_dir, tokenizer=resumed.tokenizer,
                          max_length=32, limit=24)
        lines = path.read_text().splitlines()
        assert lines[0] == f"id \t {spec.prediction_header} " and len(lines) == len(data) + 1
        rows = read_rows(resumed.model.tasks[task], data_dir / spec.files[split], labelled=False)
        texts = {i: [column[n] for column in rows.texts] for n, i in enumerate(rows.ids)}
        for line in lines[1:]:
            identifier, value = (part.strip() for part in line.split(" , "))
            check_prediction(spec, value, texts[identifier])


# ---------------------------------------------------------------------------------------------------
# Labels: floats stay floats, and labels are parsed afresh on every load (never cached)
# ---------------------------------------------------------------------------------------------------


def file_labels(path: Path, column: str) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {row["id"]: row[column] for row in csv.DictReader(handle, delimiter="\t")}


@pytest.mark.parametrize("name", ["rate", "relate"])
def test_float_labels_stay_float(name, synthetic_dir, tokenizer):
    spec = SPECS[name]
    task = bind_tasks(spec)[name]
    data = load_split(task, "train", data_dir=synthetic_dir, tokenizer=tokenizer, max_length=32)
    written = file_labels(synthetic_dir / spec.files["train"], spec.label_column)
    assert data.labels.dtype == torch.float64
    assert data.labels.tolist() == [float(written[i]) for i in data.ids]  # as written, not rounded
    assert any(not value.is_integer() for value in data.labels.tolist())
    assert torch.equal(task.kind.gold(spec, data.labels), data.labels)  # what the metrics compare with
    if name == "rate":
        assert any("." not in written[i] for i in data.ids)  # "3" is read as 3.0, a float like the others


def test_labels_follow_the_label_map_and_are_never_cached(synthetic_dir, tokenizer):
    counting = counting_tokenizer(tokenizer)
    spec = SPECS["rate"]
    written = {value.strip() for value in file_labels(synthetic_dir / spec.files["dev"], spec.label_column).values()}

    def load(label_map):
        task = bind_tasks(attrs.evolve(spec, label_map=label_map))["rate"]
        return load_split(task, "dev", data_dir=synthetic_dir, tokenizer=counting, max_length=33)

    first = load(None)
    calls = counting.calls
    halved = load({value: float(value) / 2 for value in written})
    assert counting.calls == calls > 0, "the second load must reuse the token cache"
    assert halved.sequences == first.sequences
    assert halved.labels.tolist() == [value / 2 for value in first.labels.tolist()]  # but not its labels
    some_good = load({value: value for value in written if float(value) > 0})  # a value not in the map: skipped
    assert some_good.labels.tolist() == [value for value in first.labels.tolist() if value > 0]
    assert 0 < len(some_good) < len(first)
