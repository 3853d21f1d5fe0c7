"""Sentence embeddings from encoder outputs.

``cls``: the last layer's [CLS] vector. ``mean``: the mean over real tokens of the last layer.
``pooler``: the checkpoint's tanh pooler over [CLS] (``pooler_output``). ``cls-concat-K``: the [CLS]
vectors of the last K layers side by side (K·H wide). ``cls-mean-K``: their mean (H wide).
"""

from __future__ import annotations

import re

import torch

POOLINGS = ("cls", "mean", "pooler", "cls-concat-K", "cls-mean-K")
_LAYERED = re.compile(r"^cls-(concat|mean)-(\d+)$")


def parse(how: str) -> tuple[str, int]:
    """``"cls-concat-4"`` -> ``("cls-concat", 4)``; ``"mean"`` -> ``("mean", 0)``; anything else is
    refused with the list of choices."""
    if how in ("cls", "mean", "pooler"):
        return how, 0
    match = _LAYERED.match(how) if isinstance(how, str) else None
    if match is None or int(match[2]) < 1:
        raise ValueError(f"unknown pooling {how!r}; choose one of {', '.join(POOLINGS)} "
                         "(K: how many of the last layers, at least 1, e.g. cls-concat-4)")
    return f"cls-{match[1]}", int(match[2])


def needs_hidden_states(how: str) -> bool:
    """Whether ``how`` reads layers below the last one (the encoder must return them)."""
    return parse(how)[1] > 0


def check_layers(how: str, num_layers: int) -> None:
    """Refuse a K larger than the encoder's number of layers."""
    k = parse(how)[1]
    if k > num_layers:
        raise ValueError(f"pooling {how!r} needs the last {k} layers, but the encoder has {num_layers}; "
                         f"choose K between 1 and {num_layers}")


def pooled_width(how: str, hidden_size: int) -> int:
    """Width of the sentence embedding that ``how`` makes from a ``hidden_size``-wide encoder."""
    name, k = parse(how)
    return k * hidden_size if name == "cls-concat" else hidden_size


def pool(encoder_output, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """An encoder output (``core.model.EncoderOutput``) and its (B, T) mask -> (B, W) sentence
    embeddings, W = ``pooled_width(how, H)``."""
    name, k = parse(how)
    hidden = encoder_output.last_hidden_state  # (B, T, H)
    if name == "cls":
        return hidden[:, 0]
    if name == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if name == "pooler":
        if encoder_output.pooler_output is None:
            raise ValueError("pooling 'pooler': this encoder's architecture has no pooler; use cls or mean")
        return encoder_output.pooler_output
    layers = encoder_output.hidden_states  # num_layers + 1 of (B, T, H), the embeddings first
    if layers is None:
        raise ValueError(f"pooling {how!r} needs the encoder's hidden states; call it with output_hidden_states=True")
    check_layers(how, len(layers) - 1)
    cls = [layer[:, 0] for layer in layers[-k:]]  # K of (B, H), lowest layer first
    return torch.cat(cls, dim=-1) if name == "cls-concat" else torch.stack(cls).mean(dim=0)  # (B, K·H) or (B, H)
