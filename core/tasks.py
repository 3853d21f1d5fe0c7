"""What a task is: the :class:`TaskSpec` a task plugin declares, and the :class:`Task` a run binds it to.

A spec names its files, columns and label space, and a *kind* (``core.kinds``): the kind decides how
labels are parsed and batched, what the head sees, the default head, the loss, the predictions, the
metrics, the prediction-file format, SMART's divergence and the distillation loss. A spec may bring its
own label parser, head, metrics or file reader. When a run selects its tasks, each spec is bound to its
registered kind and metric functions (:func:`bind`), and everything else talks to the bound ``Task``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs

from core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from core.data import Batch, SplitData
    from core.heads import Widths
    from core.kinds import TaskKind
    from core.registry import Registry

# The built-in kinds' names, for task plugins to import (any registered kind name is valid).
SINGLE_CLASSIFICATION = "single-classification"
PAIR_CLASSIFICATION = "pair-classification"
PAIR_REGRESSION = "pair-regression"
SINGLE_REGRESSION = "single-regression"
CROSS_PAIR_CLASSIFICATION = "cross-pair-classification"
CROSS_PAIR_REGRESSION = "cross-pair-regression"
TOKEN_TAGGING = "token-tagging"
SPLITS = ("train", "dev", "test")

Metric = Callable[[Any, Any], float]


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
    text_columns: tuple[str, ...] = attrs.field(converter=tuple, metadata={"help": "columns holding the text(s)"})
    label_column: str = "label"
    labels: tuple[str, ...] = attrs.field(default=(), converter=tuple,
                                          metadata={"help": "class or tag names, in label-id order (tagging kinds "
                                                            "need them; classification may give them for files)"})
    num_labels: int = attrs.field(default=attrs.Factory(_num_labels, takes_self=True), validator=attrs.validators.ge(1),
                                  metadata={"help": "classes; 1 means one logit (binary) or a regression score"})
    label_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), converter=tuple,
                                                   metadata={"help": "regression targets lie in [low, high]"})
    metrics: tuple[str, ...] = attrs.field(default=(), converter=tuple,
                                           metadata={"help": "registered metric names; the first is the task's score "
                                                             "(empty: the kind's)"})
    id_column: str = "id"
    prediction_header: str = attrs.field(default=attrs.Factory(lambda spec: f"Predicted_{spec.label_column}", takes_self=True),
                                         metadata={"help": "second header field of prediction files"})
    description: str = ""
    label_parser: Callable[[Any], Any] | None = attrs.field(
        default=None, metadata={"help": "value of the label column -> label, or None to skip the row (default: the kind's)"})
    head: Callable[["TaskSpec", "Widths", float], "nn.Module"] | None = attrs.field(
        default=None, metadata={"help": "head(spec, widths, dropout) -> module, instead of the kind's default head"})
    reader: Callable[["TaskSpec", Path, str], Any] | None = attrs.field(
        default=None, metadata={"help": "reader(spec, path, split) -> rows (a datasets.Dataset or a list of dicts "
                                        "with the id, text and label columns, and optionally 'line'), for files that "
                                        "are not tab-separated; split is 'train', 'dev' or 'test' (unlabelled), so one "
                                        "file may serve several splits"})


@attrs.frozen
class Task:
    """A task of a run: its spec bound to its kind and metric functions. Every shape-dependent step of
    the run goes through here, so no other module needs to know what kind a task is."""

    spec: TaskSpec
    kind: "TaskKind"
    metric_functions: Mapping[str, Metric]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.metric_functions)

    def parse_label(self, value: Any) -> Any:
        if self.spec.label_parser is not None:
            return self.spec.label_parser(value)
        return self.kind.parse_label(self.spec, value)

    def build_head(self, widths: "Widths", dropout: float) -> "nn.Module":
        if self.spec.head is not None:
            return self.spec.head(self.spec, widths, dropout)
        return self.kind.build_head(self.spec, widths, dropout)

    def loss(self, output: "torch.Tensor", batch: "Batch") -> "torch.Tensor":
        return self.kind.loss(self.spec, output, batch.labels)

    def predict(self, output: "torch.Tensor", batch: "Batch") -> Any:
        return self.kind.predict(self.spec, output, batch)

    def score(self, predictions: Any, data: "SplitData") -> dict[str, float]:
        """Every metric of the task on ``data``'s labels, by name, the task's score first."""
        gold = self.kind.gold(self.spec, data.labels)
        return {name: float(metric(predictions, gold)) for name, metric in self.metric_functions.items()}

    def with_files(self, files: Mapping[str, str]) -> "Task":
        return attrs.evolve(self, spec=attrs.evolve(self.spec, files=files))


def bind(spec: TaskSpec, kinds: "Registry", metrics: "Registry") -> Task:
    """``spec`` bound to its registered kind and metrics, checked against each other."""
    if spec.kind not in kinds:
        raise ConfigError(f"task {spec.name!r}: unknown task kind {spec.kind!r}; available: {', '.join(sorted(kinds.names()))}")
    kind = kinds[spec.kind].value
    kind.check(spec)
    names = spec.metrics or kind.metrics
    unknown = [name for name in names if name not in metrics]
    if unknown:
        raise ConfigError(f"task {spec.name!r}: unknown metric(s) {', '.join(unknown)}; available: "
                          f"{', '.join(sorted(metrics.names()))}")
    return Task(spec, kind, {name: metrics[name].value for name in names})
