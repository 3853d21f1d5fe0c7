"""Evaluation: dev metrics per task and their mean, and prediction files in the CS224N format."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core import distributed, objectives
from core.data import SplitData, make_batch


@torch.inference_mode()
def head_outputs(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> torch.Tensor:
    """Raw head outputs for every example of ``data``, in file order, in eval mode. Batches are formed
    over examples sorted by length, so padding (and wasted work) stays small. Outputs stay on the
    device until the end (one wait for it). Under torchrun each process computes every N-th batch and
    all receive every output (``core.distributed.gather_batches``): the same numbers as one process."""
    was_training = model.training
    model.eval()
    order = torch.argsort(torch.tensor(data.lengths), descending=True, stable=True).tolist()
    starts = range(0, len(order), batch_size)
    mine = [starts[i] for i in distributed.my_batches(len(starts))]
    outputs: list[torch.Tensor] = []
    bar = tqdm(total=len(data), desc=f"eval {data.task.name} {data.split}", unit="ex",
               disable=not progress or not distributed.is_main(), leave=False)
    for start in mine:
        indices = order[start:start + batch_size]
        outputs.append(model(make_batch(data, indices, pad).to(model.device)))
        bar.update(len(indices) * distributed.world().size)
    bar.close()
    model.train(was_training)
    if not order:
        return torch.empty(0)
    local = torch.cat(outputs).cpu() if outputs else torch.empty(0)
    in_length_order = distributed.gather_batches(local, [len(order[start:start + batch_size]) for start in mine])
    in_file_order = torch.empty_like(in_length_order)
    in_file_order[torch.tensor(order, dtype=torch.long)] = in_length_order
    return in_file_order


def predict_split(model: torch.nn.Module, data: SplitData, pad, batch_size: int, progress: bool = True) -> torch.Tensor:
    """Predictions (classes or scores) for every example of ``data``, in file order."""
    return objectives.predict(data.task, head_outputs(model, data, pad, batch_size, progress))


def evaluate(model: torch.nn.Module, splits: dict[str, SplitData], pad, batch_size: int,
             progress: bool = True) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Metrics per task (and ``mean`` over tasks) and predictions per task on labelled splits."""
    metrics: dict[str, float] = {}
    predictions: dict[str, torch.Tensor] = {}
    for name, data in splits.items():
        predictions[name] = predict_split(model, data, pad, batch_size, progress)
        if data.labels is not None:
            metrics[name] = objectives.score(data.task, predictions[name], data.labels)
    scored = [value for value in metrics.values() if not math.isnan(value)]
    metrics["mean"] = sum(scored) / len(scored) if scored else float("nan")
    return metrics, predictions


def write_predictions(path: Path, data: SplitData, predictions: torch.Tensor) -> None:
    """The CS224N output format: a header ``id \\t Predicted_<label>``, then ``id , prediction``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    is_score = data.task.is_regression
    lines = [f"id \t {data.task.prediction_header} \n"]
    lines += [f"{i} , {p:.4f} \n" if is_score else f"{i} , {int(p)} \n" for i, p in zip(data.ids, predictions.tolist())]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
