"""The built-in metrics, registered like any third-party metric: ``metric(predictions, gold) -> float``.

Predictions and gold are what the task's kind makes of them: tensors of classes or scores for the
sentence and pair kinds, lists of tag lists (one tag per word) for token tagging. A task lists its
metrics in ``TaskSpec.metrics`` (default: its kind's); the first is its score.
"""

from __future__ import annotations

import torch

from core.api import Component, Metric, hookimpl


def accuracy(predictions: torch.Tensor, gold: torch.Tensor) -> float:
    """Share of examples whose predicted class is the gold one."""
    return (predictions == gold).float().mean().item() if len(gold) else float("nan")


def macro_f1(predictions: torch.Tensor, gold: torch.Tensor) -> float:
    """F1 of each class present in gold or predictions, averaged without weights."""
    scores = []
    for label in torch.unique(torch.cat([predictions, gold])).tolist():
        predicted, actual = predictions == label, gold == label
        hits = (predicted & actual).sum().item()
        denominator = predicted.sum().item() + actual.sum().item()
        scores.append(2 * hits / denominator if denominator else 0.0)
    return sum(scores) / len(scores) if scores else float("nan")


def pearson(predictions: torch.Tensor, gold: torch.Tensor) -> float:
    """Pearson correlation of predicted and gold scores."""
    x, y = predictions.double(), gold.double()
    x, y = x - x.mean(), y - y.mean()
    denominator = x.norm() * y.norm()
    return (x @ y / denominator).item() if denominator > 0 else float("nan")


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1 … n, ties sharing their mean rank."""
    values = values.double()
    order = torch.argsort(values)
    ranked = torch.empty_like(values)
    ranked[order] = torch.arange(1, len(values) + 1, dtype=torch.double)
    for value in torch.unique(values):  # ties: the mean of their ranks
        tied = values == value
        if tied.sum() > 1:
            ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(predictions: torch.Tensor, gold: torch.Tensor) -> float:
    """Spearman rank correlation: Pearson of the ranks."""
    return pearson(ranks(predictions), ranks(gold))


def _seqeval(name: str):
    def metric(predictions: list[list[str]], gold: list[list[str]]) -> float:
        from seqeval import metrics

        return float(getattr(metrics, f"{name}_score")(gold, predictions, zero_division=0))

    metric.__doc__ = f"Entity-level {name} (seqeval, CoNLL rules: an entity counts when its span and type match)."
    return metric


BUILT_IN = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "pearson": pearson,
    "spearman": spearman,
    "entity_f1": _seqeval("f1"),
    "entity_precision": _seqeval("precision"),
    "entity_recall": _seqeval("recall"),
}


@hookimpl
def platform_metrics() -> list[Component[Metric]]:
    return [Component(name, metric) for name, metric in BUILT_IN.items()]
