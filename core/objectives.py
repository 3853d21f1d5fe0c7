"""Losses, predictions and metrics of a task, looked up by the names its spec declares.

Head outputs: class logits (cross-entropy), one logit (bce), or a score on the label range scaled to
[0, 1] (mse; ``CosineRegressor`` outputs a cosine there). Regression losses are computed on that
scaled range, so a 0-5 task and a 0-1 task train at the same learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.tasks import TaskSpec


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item() if len(labels) else float("nan")


def pearson(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    x, y = predictions.double(), labels.double()
    x, y = x - x.mean(), y - y.mean()
    denominator = x.norm() * y.norm()
    return (x @ y / denominator).item() if denominator > 0 else float("nan")


METRICS = {"accuracy": accuracy, "pearson": pearson}


def scaled_labels(task: TaskSpec, labels: torch.Tensor) -> torch.Tensor:
    low, high = task.label_range
    return (labels.float() - low) / (high - low)


def loss(task: TaskSpec, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's training loss of a head output against gold labels."""
    if task.loss == "cross-entropy":
        return F.cross_entropy(output, labels.long())
    if task.loss == "bce":
        return F.binary_cross_entropy_with_logits(output.view(-1), labels.float())
    return F.mse_loss(output.view(-1), scaled_labels(task, labels))


def predict(task: TaskSpec, output: torch.Tensor) -> torch.Tensor:
    """Head output -> predictions in the task's label space (classes or scores)."""
    if task.loss == "cross-entropy":
        return output.argmax(dim=-1)
    if task.loss == "bce":
        return (output.view(-1) > 0).long()
    low, high = task.label_range
    return low + (high - low) * output.view(-1).float()


def score(task: TaskSpec, predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return METRICS[task.metric](predictions, labels)
