"""Several trained runs as one model: ``platform evaluate RUN RUN ...`` and ``platform predict`` average
their head outputs (an ensemble), so every task kind predicts and scores from the mean as from one model.

For classification the mean is taken over logits (the normalised geometric mean of the members'
probabilities), for regression over the scores. The runs must agree on what shapes the inputs: the
tasks, the checkpoint (its vocabulary) and the maximum length; they may differ in anything else
(seeds, plugins, topologies, recipes).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.data.batch import Batch


class Ensemble(nn.Module):
    """The mean head output of ``members`` (models of the same tasks) on every batch."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.tasks = members[0].tasks

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.stack([member(batch) for member in self.members]).mean(dim=0)


