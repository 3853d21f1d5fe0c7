"""The multitask model: one shared encoder, pooling, and the heads a topology built."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn

from core.base.devices import autocast
from core.base.errors import PlatformError
from core.data.batch import Batch
from core.encoder.architecture import Encoder, EncoderOutput
from core.encoder.pooling import needs_hidden_states, pool
from core.tasks.task import Task


@contextlib.contextmanager
def perturbed_embeddings(model: "MultitaskModel", perturb: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, ``model``'s embedding-layer output (S·B, T, H) is replaced by ``perturb`` of it
    before the transformer layers (SMART's adversarial noise); gradients flow through ``perturb``. Every
    architecture's embeddings are a module whose output the first layer reads (core.encoder.architecture)."""
    embeddings = getattr(model.encoder, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        raise PlatformError(f"the encoder ({type(model.encoder).__name__}) has no embeddings module whose output "
                            "could be perturbed; an encoder architecture must have one (core.api.Encoder)")
    handle = embeddings.register_forward_hook(lambda module, args, output: perturb(output))
    try:
        yield
    finally:
        handle.remove()


class MultitaskModel(nn.Module):
    def __init__(self, encoder: Encoder, heads: nn.ModuleDict, tasks: dict[str, Task], pooling: str,
                 precision: str = "fp32"):
        super().__init__()
        self.encoder: Encoder = encoder
        self.heads = heads
        self.tasks = tasks
        self.pooling = pooling
        self.precision = precision  # "bf16": the forward runs under autocast (core.devices)
        self._hidden_states = needs_hidden_states(pooling)  # only pay for every layer's output when pooled
        self._shapes_checked: set[str] = set()  # tasks whose head output was checked (on their first batch)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch) -> torch.Tensor:
        """The head output of ``batch``'s task, in float32 whatever the precision of the forward: under
        ``bf16`` only the encoder runs in autocast; pooling and the head compute in float32 (as the loss
        does after them), so a regression head's scores are not rounded to bfloat16's 8 bits."""
        task = self.tasks[batch.task]
        pooled_input = task.kind.head_input != "tokens"
        encoded = self.encode(batch, self._hidden_states and pooled_input)
        pooled = pool(encoded, batch.attention_mask, self.pooling) if pooled_input else None  # (S·B, W)
        output = self.heads[batch.task](*task.kind.features(encoded, batch, pooled))
        if batch.task not in self._shapes_checked:
            check_output_shape(task, output, batch)
            self._shapes_checked.add(batch.task)
        return output.float()

    def sentence_embeddings(self, batch: Batch) -> torch.Tensor:
        """Pooled embeddings (S·B, W) of every sequence of ``batch``, W = ``pooled_width(pooling, H)``."""
        return pool(self.encode(batch, self._hidden_states), batch.attention_mask, self.pooling).float()

    def encode(self, batch: Batch, output_hidden_states: bool) -> EncoderOutput:
        """The encoder's output for ``batch``, computed under the run's autocast (``bf16``) and handed on
        in float32."""
        with autocast(self.device, self.precision):
            encoded = self.encoder(batch.input_ids, attention_mask=batch.attention_mask,
                                   token_type_ids=batch.token_type_ids, output_hidden_states=output_hidden_states)
        if self.precision == "fp32":
            return encoded
        hidden = None if encoded.hidden_states is None else tuple(h.float() for h in encoded.hidden_states)
        pooled = None if encoded.pooler_output is None else encoded.pooler_output.float()
        return EncoderOutput(encoded.last_hidden_state.float(), pooled, hidden)

    def freeze_encoder(self) -> None:
        """``pretrain`` mode: the encoder is a fixed feature extractor; only heads train."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)


def check_output_shape(task: Task, output: torch.Tensor, batch: Batch) -> None:
    """Refuse a head output whose shape is not what the task's kind declares: (B, outputs), or (B, T, outputs)
    for a kind whose head reads every token; naming task, kind, where the kind comes from, and both shapes."""
    width = task.kind.outputs(task.spec)
    expected = (len(batch.ids), batch.input_ids.shape[1], width) if task.kind.head_input == "tokens" \
        else (len(batch.ids), width)
    if tuple(output.shape) != expected:
        kind = task.kind
        raise HeadShapeError(f"task {task.name!r}: the head of kind {kind.name!r} (from {type(kind).__module__}) "
                             f"returned a {tuple(output.shape)} output for a batch of {len(batch.ids)}, expected "
                             f"{expected} (batch, {'tokens, ' if len(expected) == 3 else ''}kind.outputs(spec) = {width})")


class HeadShapeError(PlatformError):
    """A task's head returns an output of another shape than its kind declares."""
