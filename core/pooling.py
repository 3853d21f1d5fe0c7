"""Sentence embeddings from encoder outputs: ``cls`` or ``mean`` over real tokens."""

from __future__ import annotations

import torch

POOLINGS = ("cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) hidden states and (B, T) mask -> (B, H) sentence embeddings."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {how!r}; choose one of {', '.join(POOLINGS)}")
