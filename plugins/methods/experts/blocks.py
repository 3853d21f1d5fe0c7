"""What the mixture-of-experts topologies are built from: experts, softmax gates that tally how much each
expert is used, the mixture itself, the head that mixes a task's embeddings before its kind's head, and
the TensorBoard logging of the gates' usage.

Experts read and write embeddings of the pooled width W, so a mixture stands where the pooled
embedding stood: the task's own head (its kind's default head: a linear layer, SBERT's pair classifier,
the cosine) reads it unchanged. A pair task mixes u and v apart, through the same experts and its gate.
Every expert is a module of its own, drawn from the random generator in turn, so experts start apart:
experts initialised alike receive the same gradients and stay alike, and a mixture of copies is one
expert.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from core.api import Task, TrainingRun


class Expert(nn.Module):
    """(…, W) -> (…, W): ``linear -> GELU -> dropout -> linear`` of inner width ``width``."""

    def __init__(self, hidden_size: int, width: int, dropout: float):
        super().__init__()
        self.inner = nn.Linear(hidden_size, width)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.outer = nn.Linear(width, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(self.act(self.inner(x))))


class Experts(nn.Module):
    """``count`` experts over the same input: x (B, W) -> their outputs (B, count, W)."""

    def __init__(self, count: int, hidden_size: int, width: int, dropout: float):
        super().__init__()
        self.experts = nn.ModuleList(Expert(hidden_size, width, dropout) for _ in range(count))

    def __len__(self) -> int:
        return len(self.experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, W)


class Gate(nn.Module):
    """x (B, W) -> softmax weights (B, E) over the experts ``labels`` names, summing to 1 per example.

    The gate starts uniform (its linear layer at zero): the experts differ, so the gradient moves it
    away. While the model trains, a recorded call adds its weights to a tally that :meth:`usage` reads
    (and clears) at log points: the mean weight of each expert over the examples gated since. The
    tally is not part of the state dict (it is a log's, not the model's)."""

    def __init__(self, hidden_size: int, labels: list[str], topology: str, tag: str):
        super().__init__()
        self.linear = nn.Linear(hidden_size, len(labels))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.labels, self.topology, self.tag = labels, topology, tag
        self._tally: torch.Tensor | None = None  # (E,) summed weights, on the device
        self._examples = 0

    def forward(self, x: torch.Tensor, record: bool = True) -> torch.Tensor:
        weights = torch.softmax(self.linear(x), dim=-1)  # (B, E)
        if record and self.training:
            summed = weights.detach().sum(dim=0)  # (E,)
            self._tally = summed if self._tally is None else self._tally + summed
            self._examples += x.shape[0]
        return weights

    def usage(self) -> dict[str, float]:
        """The mean weight of each expert over the examples gated since the last call (empty when none
        were); starts the next tally. Reading it waits for the device."""
        if self._tally is None or not self._examples:
            return {}
        means = (self._tally / self._examples).tolist()
        self._tally, self._examples = None, 0
        return dict(zip(self.labels, means))


def mix(weights: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Σ_k weights[:, k] · outputs[:, k]: (B, E), (B, E, W) -> (B, W)."""
    return torch.einsum("be,bew->bw", weights, outputs)


class MixedHead(nn.Module):
    """A task's head over mixed embeddings: each embedding the kind hands its head (the pooled sentence,
    or u and v of a pair) goes through ``mixture``, then the kind's own head reads them."""

    def __init__(self, mixture: nn.Module, head: nn.Module):
        super().__init__()
        self.mixture = mixture
        self.head = head

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(*(self.mixture(x) for x in embeddings))


def mixes(task: Task) -> bool:
    """Whether a task's head reads pooled embeddings (one sentence, or a pair), which experts mix; a head
    that reads every token (tagging) keeps its own."""
    return task.kind.head_input in ("sentence", "pair")


def gates(model: nn.Module, topology: str) -> Iterator[Gate]:
    """The gates of ``topology`` in ``model``, each once however many heads share it."""
    for module in model.modules():
        if isinstance(module, Gate) and module.topology == topology:
            yield module


def log_gate_usage(run: TrainingRun, step: int, topology: str) -> None:
    """Every gate's mean weight of each expert since the last log point, as ``<gate tag>/<expert>``."""
    for gate in gates(run.model, topology):
        for label, value in gate.usage().items():
            run.writer.add_scalar(f"{gate.tag}/{label}", value, step)
