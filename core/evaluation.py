"""Evaluation: one length-ordered inference pass, dev metrics per task and their mean, and prediction
files in the CS224N format."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from core.data import Batch, SplitData, make_batch


@torch.inference_mode()
def infer(model: torch.nn.Module, data: SplitData, pad, batch_size: int, per_batch: Callable[[torch.Tensor, Batch], Any],
          progress: bool = True) -> list[Any]:
    """``per_batch(head_output, batch)`` over every example of ``data`` in eval mode, returned per example
    in file order (``per_batch`` gives one item per example: a (B, ...) tensor or a list). Batches are
    formed over examples sorted by length, so padding (and wasted work) stays small."""
    was_training = model.training
    model.eval()
    order = torch.argsort(torch.tensor(data.lengths), descending=True, stable=True).tolist()
    in_length_order: list[Any] = []
    bar = tqdm(total=len(data), desc=f"eval {data.task.name} {data.split}", unit="ex", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = make_batch(data, indices, pad).to(model.device)
        items = per_batch(model(batch), batch)
        in_length_order.extend(items.cpu().unbind() if isinstance(items, torch.Tensor) else items)
        bar.update(len(indices))
    bar.close()
    model.train(was_training)
    in_file_order: list[Any] = [None] * len(order)
    for position, item in zip(order, in_length_order):
        in_file_order[position] = item
    return in_file_order


def stacked(items: list[Any]) -> Any:
    """Per-example tensors of one shape as one tensor; anything else as the list it is."""
    if items and all(isinstance(item, torch.Tensor) for item in items):
        return torch.stack(items)
    return items


def head_outputs(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> Any:
    """Raw head outputs (float32) for every example of ``data``, in file order: one tensor (N, ...)."""
    return stacked(infer(model, data, pad, batch_size, lambda output, batch: output.float(), progress))


def predict_split(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> Any:
    """The task's predictions for every example of ``data``, in file order."""
    return stacked(infer(model, data, pad, batch_size, data.task.predict, progress))


def evaluate(model: torch.nn.Module, splits: dict[str, SplitData], pad, batch_size: int,
             progress: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and predictions per task on labelled splits: ``metrics[task]`` is the task's score (its
    first metric), ``metrics["task/metric"]`` every metric, and ``metrics["mean"]`` the mean score."""
    metrics: dict[str, float] = {}
    predictions: dict[str, Any] = {}
    scores: list[float] = []
    for name, data in splits.items():
        predictions[name] = predict_split(model, data, pad, batch_size, progress)
        if data.labels is not None:
            values = data.task.score(predictions[name], data)
            metrics[name] = next(iter(values.values()))
            scores.append(metrics[name])
            if len(values) > 1:
                metrics.update({f"{name}/{metric}": value for metric, value in values.items()})
    scored = [value for value in scores if not math.isnan(value)]
    metrics["mean"] = sum(scored) / len(scored) if scored else float("nan")
    return metrics, predictions


def write_predictions(path: Path, data: SplitData, predictions: Any) -> None:
    """The CS224N output format: a header ``id \\t Predicted_<label>``, then ``id , prediction``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = data.task.spec
    values = predictions.tolist() if isinstance(predictions, torch.Tensor) else predictions
    lines = [f"id \t {spec.prediction_header} \n"]
    lines += [f"{i} , {data.task.kind.format_prediction(spec, p)} \n" for i, p in zip(data.ids, values)]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
