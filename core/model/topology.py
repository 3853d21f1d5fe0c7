"""What a head topology is: how the heads of a run's tasks are arranged (apart, or sharing layers).

A topology component's factory is ``factory(settings, tasks, widths, dropout) -> nn.ModuleDict`` with a
head per task (:class:`TopologyFactory`); a task's own default head is ``task.build_head(widths,
dropout)``, which its kind makes. The default topology (``independent``) gives every task its default
head; an opt-in plugin's topology replaces it when the plugin is enabled.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch.nn as nn

from core.tasks.heads import Widths
from core.tasks.task import Task


class TopologyFactory(Protocol):
    """``factory(settings, tasks, widths, dropout) -> nn.ModuleDict``: a head per task of ``tasks``."""

    def __call__(self, settings: Any, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict: ...
