"""What a task is: its files, columns, kind, label space, loss and metric.

A task plugin registers a :class:`TaskSpec`; the host builds the task's head, loss and metric from
its ``kind`` and label space, so a third-party task needs no change in ``core/``.
"""

from __future__ import annotations

from typing import Mapping

import attrs

SINGLE_CLASSIFICATION = "single-classification"
PAIR_CLASSIFICATION = "pair-classification"
PAIR_REGRESSION = "pair-regression"
KINDS = (SINGLE_CLASSIFICATION, PAIR_CLASSIFICATION, PAIR_REGRESSION)
SPLITS = ("train", "dev", "test")


def _default_loss(spec: "TaskSpec") -> str:
    if spec.kind == PAIR_REGRESSION:
        return "mse"
    return "bce" if spec.num_labels == 1 else "cross-entropy"


def _default_metric(spec: "TaskSpec") -> str:
    return "pearson" if spec.kind == PAIR_REGRESSION else "accuracy"


def _check_columns(spec: "TaskSpec", attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    wanted = 1 if spec.kind == SINGLE_CLASSIFICATION else 2
    if len(value) != wanted:
        raise ValueError(f"task {spec.name!r} of kind {spec.kind} needs {wanted} text column(s), got {value}")


def _check_splits(spec: "TaskSpec", attribute: attrs.Attribute, value: Mapping[str, str]) -> None:
    unknown = set(value) - set(SPLITS)
    if unknown or "train" not in value or "dev" not in value:
        raise ValueError(f"task {spec.name!r}: files must name 'train' and 'dev' (and optionally 'test'), got {sorted(value)}")


@attrs.frozen
class TaskSpec:
    """A task as a plugin declares it."""

    name: str = attrs.field(metadata={"help": "short name used by --tasks"})
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS), metadata={"help": "one of " + ", ".join(KINDS)})
    files: Mapping[str, str] = attrs.field(validator=_check_splits, metadata={"help": "split -> file name in the data folder"})
    text_columns: tuple[str, ...] = attrs.field(converter=tuple, validator=_check_columns)
    label_column: str = "label"
    num_labels: int = attrs.field(default=1, validator=attrs.validators.ge(1),
                                  metadata={"help": "classes; 1 means one logit (binary) or a regression score"})
    label_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), converter=tuple,
                                                   metadata={"help": "regression targets lie in [low, high]"})
    loss: str = attrs.field(default=attrs.Factory(_default_loss, takes_self=True),
                            validator=attrs.validators.in_(("cross-entropy", "bce", "mse")))
    metric: str = attrs.field(default=attrs.Factory(_default_metric, takes_self=True),
                              validator=attrs.validators.in_(("accuracy", "pearson")))
    id_column: str = "id"
    prediction_header: str = attrs.field(default=attrs.Factory(lambda spec: f"Predicted_{spec.label_column}", takes_self=True),
                                         metadata={"help": "second header field of prediction files"})
    description: str = ""

    @property
    def is_pair(self) -> bool:
        return self.kind != SINGLE_CLASSIFICATION

    @property
    def is_regression(self) -> bool:
        return self.kind == PAIR_REGRESSION

    def parse_label(self, text: str | None) -> float | int | None:
        """The label of a row, or None when it is missing or outside the label space."""
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        if self.is_regression:
            low, high = self.label_range
            return value if low <= value <= high else None
        classes = 2 if self.num_labels == 1 else self.num_labels
        return int(value) if value.is_integer() and 0 <= value < classes else None
