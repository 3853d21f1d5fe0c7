"""A padded batch of one task: what the model, the losses and the hooks receive."""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class Batch:
    """A padded batch. A bi-encoder pair stacks both sentences: rows ``[:n]`` are the first, ``[n:]``
    the second; ``labels`` and ``extras`` are what the task's kind collates ((B,) labels, or (B, T))."""

    task: str
    input_ids: torch.Tensor  # (S·B, T), S sequences per example
    token_type_ids: torch.Tensor  # (S·B, T)
    attention_mask: torch.Tensor  # (S·B, T)
    labels: torch.Tensor | None
    ids: list[str]
    indices: torch.Tensor  # (B,) positions in the split, for per-example state (teachers, caches)
    extras: dict[str, torch.Tensor] = attrs.Factory(dict)

    def to(self, device: torch.device) -> "Batch":
        """The batch with its model inputs, labels and extras on ``device``; ``indices`` stay on the CPU,
        where per-example state (teacher outputs, caches) lives."""
        if self.input_ids.device == device:
            return self
        moved = {name: getattr(self, name).to(device, non_blocking=True)
                 for name in ("input_ids", "token_type_ids", "attention_mask")}
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        extras = {name: value.to(device, non_blocking=True) for name, value in self.extras.items()}
        return attrs.evolve(self, labels=labels, extras=extras, **moved)
