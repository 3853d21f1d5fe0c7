"""What the MMoE and PLE topology tests share: four tasks of every head kind, tiny widths, inputs, and gates
given weights of their own."""

from __future__ import annotations

import torch

from core.tasks.heads import Widths
from core.tasks.spec import TaskSpec
from plugins.methods.experts.blocks import Gate
from tests.helpers import bind_tasks

H = 16
FILES = {"train": "-", "dev": "-"}
SST = TaskSpec(name="sst", kind="single-classification", files=FILES, text_columns=("s",), num_labels=5)
QUORA = TaskSpec(name="quora", kind="pair-classification", files=FILES, text_columns=("a", "b"), num_labels=1)
STS = TaskSpec(name="sts", kind="pair-regression", files=FILES, text_columns=("a", "b"), label_range=(0.0, 5.0))
NER = TaskSpec(name="ner", kind="token-tagging", files=FILES, text_columns=("words",), labels=("O", "B-PER", "I-PER"))
TASKS = list(bind_tasks(SST, QUORA, STS, NER).values())
WIDTHS = Widths(H, H)


def inputs(batch: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, H, generator=generator), torch.randn(batch, H, generator=generator)


def randomise_gates(module: torch.nn.Module) -> None:
    """Gates start uniform (at zero); give them weights of their own, as training would."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for gate in (m for m in module.modules() if isinstance(m, Gate)):
            gate.linear.weight.copy_(torch.randn(gate.linear.weight.shape, generator=generator))
            gate.linear.bias.copy_(torch.randn(gate.linear.bias.shape, generator=generator))
