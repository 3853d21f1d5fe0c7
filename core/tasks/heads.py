"""Task heads: the modules the built-in task kinds build by default (``plugins/kinds.py``)."""

from __future__ import annotations

import attrs
import torch
import torch.nn as nn
import torch.nn.functional as F


@attrs.frozen
class Widths:
    """The widths heads read: a pooled sentence embedding (``--pooling`` may widen it) and a token state."""

    pooled: int
    hidden: int


class SentenceClassifier(nn.Module):
    """Pooled sentence embedding -> dropout -> linear: class logits, or one logit, or one score."""

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
    (SBERT's cosine objective), and the regression kinds map it back to the task's range."""

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(u, v, dim=-1).unsqueeze(-1)  # (B, 1)


class TokenClassifier(nn.Module):
    """Token states -> dropout -> linear: tag logits at every position."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(hidden))  # (B, T, num_labels)
