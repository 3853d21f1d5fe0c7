"""Several trained runs as one model: ``platform evaluate RUN RUN ...`` and ``platform predict`` average
their head outputs (an ensemble), so every task kind predicts and scores from the mean as from one model.

For classification the mean is taken over logits (the normalised geometric mean of the members'
probabilities), for regression over the scores. The runs must agree on what shapes the inputs: the
tasks, the checkpoint (its vocabulary) and the maximum length; they may differ in anything else
(seeds, plugins, topologies, recipes).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from core.config import RunConfig
from core.data import Batch
from core.errors import ConfigError

MUST_AGREE = ("tasks", "checkpoint", "max_length")  # what the shared tokenized inputs depend on


class Ensemble(nn.Module):
    """The mean head output of ``members`` (models of the same tasks) on every batch."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.tasks = members[0].tasks

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.stack([member(batch) for member in self.members]).mean(dim=0)


def check_members(configs: list[RunConfig], paths: list[Path], split: str) -> None:
    """Refuse runs whose inputs would differ, naming the runs and the setting."""
    fields = MUST_AGREE + (("validation_split",) if split == "validation" else ())
    first = configs[0]
    for config, path in zip(configs[1:], paths[1:]):
        for name in fields:
            if getattr(config, name) != getattr(first, name):
                raise ConfigError(f"{path} and {paths[0]} cannot be evaluated together: their {name} differs "
                                  f"({getattr(config, name)!r} vs {getattr(first, name)!r}); an ensemble's runs share "
                                  f"their inputs ({', '.join(fields)})")
