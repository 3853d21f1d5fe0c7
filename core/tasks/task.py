"""A task of a run: the :class:`~core.tasks.spec.TaskSpec` a plugin declares bound to its registered
kind and metric functions (:func:`bind`); everything else in a run talks to the bound :class:`Task`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import attrs

from core.base.errors import ConfigError
from core.tasks.spec import Metric, TaskSpec

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from core.data.batch import Batch
    from core.tasks.heads import Widths
    from core.tasks.kind import TaskKind










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
        """A row's label from the value of its label column (through the spec's ``label_map`` when it has
        one), or None to skip the row."""
        if self.spec.label_map is not None:
            value = self.spec.label_map.get(str(value).strip())
            if value is None:
                return None
        return self.kind.parse_label(self.spec, value)

    def build_head(self, widths: "Widths", dropout: float) -> "nn.Module":
        """The task's default head: its kind's (a topology arranges the heads of a run)."""
        return self.kind.build_head(self.spec, widths, dropout)

    def loss(self, output: "torch.Tensor", batch: "Batch") -> "torch.Tensor":
        if batch.labels is None:
            raise ConfigError(f"task {self.name!r}: a loss needs labels, and this batch (of an unlabelled split) "
                              "has none")
        return self.kind.loss(self.spec, output, batch.labels)

    def predict(self, output: "torch.Tensor", batch: "Batch") -> Any:
        return self.kind.predict(self.spec, output, batch)

    def score(self, predictions: Any, labels: Any) -> dict[str, float]:
        """Every metric of the task against a split's stacked ``labels``, by name, the task's score first."""
        gold = self.kind.gold(self.spec, labels)
        return {name: float(metric(predictions, gold)) for name, metric in self.metric_functions.items()}

    def with_files(self, files: Mapping[str, str]) -> "Task":
        return attrs.evolve(self, spec=attrs.evolve(self.spec, files=files))


def bind(spec: TaskSpec, kinds: Mapping[str, TaskKind], metrics: Mapping[str, Metric]) -> Task:
    """``spec`` bound to its kind and metrics, looked up by name among the registered ``kinds`` and
    ``metrics``, and checked against each other."""
    if spec.kind not in kinds:
        raise ConfigError(f"task {spec.name!r}: unknown task kind {spec.kind!r}; available: {', '.join(sorted(kinds))}")
    kind = kinds[spec.kind]
    kind.check(spec)
    names = spec.metrics or kind.metrics
    unknown = [name for name in names if name not in metrics]
    if unknown:
        raise ConfigError(f"task {spec.name!r}: unknown metric(s) {', '.join(unknown)}; available: "
                          f"{', '.join(sorted(metrics))}")
    return Task(spec, kind, {name: metrics[name] for name in names})
