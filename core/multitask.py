"""The multitask model: one shared encoder, pooling, and the heads a topology built."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from core.data import Batch
from core.devices import autocast
from core.pooling import needs_hidden_states, pool
from core.tasks import TaskSpec


class MultitaskModel(nn.Module):
    precision = "fp32"  # "bf16": the forward runs under autocast (core.devices); set by the run

    def __init__(self, encoder: nn.Module, heads: nn.ModuleDict, tasks: dict[str, TaskSpec], pooling: str):
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        self.tasks = tasks
        self.pooling = pooling
        self._hidden_states = needs_hidden_states(pooling)  # only pay for every layer's output when pooled

    def embed(self, batch: Batch, embedding_hook: Callable | None = None) -> torch.Tensor:
        """Sentence embeddings (texts·B, W), W = ``pooled_width(pooling, H)``; both sentences of a
        pair go through one forward."""
        out = self.encoder(batch.input_ids, attention_mask=batch.attention_mask,
                           token_type_ids=batch.token_type_ids, output_hidden_states=self._hidden_states,
                           embedding_hook=embedding_hook)
        return pool(out, batch.attention_mask, self.pooling)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch, embedding_hook: Callable | None = None) -> torch.Tensor:
        """The head output of ``batch``'s task, in float32 whatever the precision of the forward.
        ``embedding_hook`` may perturb the embedding-layer output (SMART's adversarial noise) before
        the transformer layers."""
        with autocast(self.device, self.precision):
            sentences = self.embed(batch, embedding_hook)
            if self.tasks[batch.task].is_pair:
                output = self.heads[batch.task](*sentences.chunk(2))  # u: first sentences, v: second
            else:
                output = self.heads[batch.task](sentences)
        return output.float()

    def freeze_encoder(self) -> None:
        """``pretrain`` mode: the encoder is a fixed feature extractor; only heads train."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
