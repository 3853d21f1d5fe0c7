"""Task heads, one per task kind; the default topology builds one per task from its spec."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.tasks import PAIR_CLASSIFICATION, PAIR_REGRESSION, SINGLE_CLASSIFICATION, TaskSpec


class SentenceClassifier(nn.Module):
    """Pooled sentence embedding -> dropout -> linear."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(u))  # (B, num_labels)


class PairClassifier(nn.Module):
    """SBERT's classification objective: [u; v; |u - v|] -> dropout -> linear."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(3 * hidden_size, num_labels)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        features = torch.cat([u, v, (u - v).abs()], dim=-1)  # (B, 3H)
        return self.out(self.dropout(features))  # (B, num_labels)


class CosineRegressor(nn.Module):
    """Cosine similarity of the two embeddings; it lives on the label range scaled to [0, 1]
    (SBERT's cosine objective), and ``core.objectives`` maps it back to the task's range."""

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(u, v, dim=-1).unsqueeze(-1)  # (B, 1)


def head_for(task: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
    """The default head of a task, chosen by its kind."""
    if task.kind == SINGLE_CLASSIFICATION:
        return SentenceClassifier(hidden_size, task.num_labels, dropout)
    if task.kind == PAIR_CLASSIFICATION:
        return PairClassifier(hidden_size, task.num_labels, dropout)
    if task.kind == PAIR_REGRESSION:
        return CosineRegressor()
    raise ValueError(f"task {task.name!r}: no head for kind {task.kind!r}")
