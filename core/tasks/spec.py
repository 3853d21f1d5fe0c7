"""What a task is, as its plugin declares it: a :class:`TaskSpec`.

A spec names its files, columns and label space, and a *kind* (:mod:`core.tasks.kind`): the kind decides
how labels are parsed and batched, what the head sees, the default head, the loss, the predictions, the
metrics and the prediction-file format. A spec declares data, not code, but for a file ``reader`` of its
own: its labels (names, count, range, a ``label_map`` of the written values), its metrics. A run binds
each spec to its registered kind and metrics (:mod:`core.tasks.task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import attrs

SPLITS = ("train", "dev", "test")


Metric = Callable[[Any, Any], float]


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _pair(values: Iterable[float]) -> tuple[float, float]:
    low, high = values
    return low, high


def _check_splits(spec: "TaskSpec", attribute: attrs.Attribute, value: Mapping[str, str]) -> None:
    unknown = set(value) - set(SPLITS)
    if unknown or "train" not in value or "dev" not in value:
        raise ValueError(f"task {spec.name!r}: files must name 'train' and 'dev' (and optionally 'test'), got {sorted(value)}")


def _num_labels(spec: "TaskSpec") -> int:
    return len(spec.labels) if spec.labels else 1


@attrs.frozen
class TaskSpec:
    """A task as its plugin declares it; ``description`` is what ``platform plugins`` shows."""

    name: str = attrs.field(metadata={"help": "short name used by --tasks"})
    kind: str = attrs.field(metadata={"help": "a registered task kind (`platform plugins` lists them)"})
    files: Mapping[str, str] = attrs.field(validator=_check_splits, metadata={"help": "split -> file name in the data folder"})
    text_columns: tuple[str, ...] = attrs.field(converter=_strings, metadata={"help": "columns holding the text(s)"})
    label_column: str = "label"
    labels: tuple[str, ...] = attrs.field(default=(), converter=_strings,
                                          metadata={"help": "class or tag names, in label-id order (tagging kinds "
                                                            "need them; classification may give them for files)"})
    num_labels: int = attrs.field(default=attrs.Factory(_num_labels, takes_self=True), validator=attrs.validators.ge(1),
                                  metadata={"help": "classes; 1 means one logit (binary) or a regression score"})
    label_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), converter=_pair,
                                                   metadata={"help": "regression targets lie in [low, high]"})
    metrics: tuple[str, ...] = attrs.field(default=(), converter=_strings,
                                           metadata={"help": "registered metric names; the first is the task's score "
                                                             "(empty: the kind's)"})
    id_column: str = "id"
    prediction_header: str = attrs.field(default=attrs.Factory(lambda spec: f"Predicted_{spec.label_column}", takes_self=True),
                                         metadata={"help": "second header field of prediction files"})
    description: str = ""
    label_map: Mapping[str, Any] | None = attrs.field(
        default=None, metadata={"help": "the label column's values (as written, stripped) -> what the kind parses; a "
                                        "value not in the map skips its row (e.g. SST folded to two classes: "
                                        "{'0': 0, '1': 0, '3': 1, '4': 1})"})
    reader: Callable[["TaskSpec", Path, str], Any] | None = attrs.field(
        default=None, metadata={"help": "reader(spec, path, split) -> rows (a datasets.Dataset or a list of dicts "
                                        "with the id, text and label columns, and optionally 'line'), for files that "
                                        "are not tab-separated; split is 'train', 'dev' or 'test' (unlabelled), so one "
                                        "file may serve several splits"})
