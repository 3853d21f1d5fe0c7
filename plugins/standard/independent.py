"""The default head topology: every task gets its own head (its spec's, else its kind's default)."""

from __future__ import annotations

import torch.nn as nn

from core.api import Task, Widths, hookimpl


def independent_heads(config: None, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict:
    """One head per task, nothing shared between heads."""
    return nn.ModuleDict({task.name: task.build_head(widths, dropout) for task in tasks})


@hookimpl
def platform_register_topologies(register):
    register("independent", independent_heads, help="one head per task, nothing shared")
