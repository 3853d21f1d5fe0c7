"""The default head topology: every task gets its own head, chosen by its kind."""

from __future__ import annotations

import torch.nn as nn

from core.heads import head_for
from core.hookspecs import hookimpl


def independent_heads(config, tasks, hidden_size: int, dropout: float) -> nn.ModuleDict:
    """One head per task, nothing shared between heads."""
    return nn.ModuleDict({task.name: head_for(task, hidden_size, dropout) for task in tasks})


@hookimpl
def platform_register_topologies(register):
    register("independent", independent_heads, help="one head per task, nothing shared")
