"""Evaluation: one length-ordered inference pass, dev metrics per task and their mean, and prediction
files in the CS224N format."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from core.base import distributed
from core.base.files import atomic_write
from core.data.batch import Batch
from core.tasks.splits import SplitData, make_batch


@torch.inference_mode()
def infer(model: torch.nn.Module, data: SplitData, pad, batch_size: int, per_batch: Callable[[torch.Tensor, Batch], Any],
          progress: bool = True) -> Any:
    """``per_batch(head_output, batch)`` over every example of ``data`` in eval mode, in file order:
    one tensor when ``per_batch`` gives (B, ...) tensors, else a list with an item per example.
    Batches are formed over examples sorted by length, so padding (and wasted work) stays small, and
    results stay on the device until the end (one wait for it). Under torchrun each process computes
    every N-th batch and all receive every result: the same numbers as one process."""
    was_training = model.training
    model.eval()
    order = torch.argsort(torch.tensor(data.lengths), descending=True, stable=True).tolist()
    starts = range(0, len(order), batch_size)
    mine = [starts[i] for i in distributed.my_batches(len(starts))]
    results: list[Any] = []
    device = next(model.parameters()).device
    # closed on the way out of an interrupt too, so that its last redraw comes before the command's last line
    with tqdm(total=len(data), desc=f"eval {data.task.name} {data.split}", unit="ex",
              disable=not progress or not distributed.is_main(), leave=False) as bar:
        for start in mine:
            indices = order[start:start + batch_size]
            batch = make_batch(data, indices, pad).to(device)
            results.append(per_batch(model(batch), batch))
            bar.update(len(indices) * distributed.world().size)
    model.train(was_training)
    results = [items.cpu() if isinstance(items, torch.Tensor) else items for items in results]
    if distributed.world().size > 1:  # batch i was computed by process i mod N, as its (i div N)-th
        gathered = distributed.all_gather_objects(results)
        results = [gathered[i % len(gathered)][i // len(gathered)] for i in range(len(starts))]
    positions = torch.tensor(order, dtype=torch.long)
    if results and all(isinstance(items, torch.Tensor) for items in results):
        in_length_order = torch.cat(results)
        in_file_order = torch.empty_like(in_length_order)
        in_file_order[positions] = in_length_order
        return in_file_order
    per_example: list[Any] = [None] * len(order)
    for position, item in zip(order, (item for items in results for item in items)):
        per_example[position] = item
    return per_example


def head_outputs(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> torch.Tensor:
    """Raw head outputs (float32) for every example of ``data``, in file order: one tensor (N, ...)."""
    return infer(model, data, pad, batch_size, lambda output, batch: output.float(), progress)


def predict_split(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> Any:
    """The task's predictions for every example of ``data``, in file order."""
    return infer(model, data, pad, batch_size, data.task.predict, progress)


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
            values = data.task.score(predictions[name], data.labels)
            metrics[name] = next(iter(values.values()))
            scores.append(metrics[name])
            if len(values) > 1:
                metrics.update({f"{name}/{metric}": value for metric, value in values.items()})
    scored = [value for value in scores if not math.isnan(value)]
    metrics["mean"] = sum(scored) / len(scored) if scored else float("nan")
    return metrics, predictions


def write_predictions(path: Path, data: SplitData, predictions: Any) -> None:
    """The CS224N output format: a header ``id \\t Predicted_<label>``, then ``id , prediction``."""
    spec = data.task.spec
    values = predictions.tolist() if isinstance(predictions, torch.Tensor) else predictions
    lines = [f"id \t {spec.prediction_header} \n"]
    lines += [f"{i} , {data.task.kind.format_prediction(spec, p)} \n" for i, p in zip(data.ids, values)]
    atomic_write(path, "".join(lines))
