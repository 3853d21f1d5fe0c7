"""The default head topology: every task gets its own head, the default head of its kind."""

from __future__ import annotations

import torch.nn as nn

from core.api import Component, Task, TopologyFactory, Widths, hookimpl


def independent_heads(settings: None, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict:
    """One head per task, nothing shared between heads."""
    return nn.ModuleDict({task.name: task.build_head(widths, dropout) for task in tasks})


@hookimpl
def platform_topologies() -> list[Component[TopologyFactory]]:
    return [Component("independent", independent_heads, default=True, help="one head per task, nothing shared")]
