"""BERT (``model_type`` "bert"): core's own encoder (``core/encoder/bert.py``), which the masked-language model
and the random-init presets build on, registered here as every other architecture is."""

from __future__ import annotations

from core.api import BERT, Architecture, Component, hookimpl


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("bert", BERT, help="BERT: learned absolute positions, Post-LN layers, tanh pooler; WordPiece")]
