"""mmoe plugin (opt-in: --plugins mmoe): Multi-gate Mixture-of-Experts heads (Ma et al., KDD 2018).

E experts shared by every task read a task's pooled embedding x; each task has a softmax gate of its
own over them, and its kind's head reads the mixture:

    h_t(x) = x + Σ_k g_t(x)_k · e_k(x),    g_t(x) = softmax(W_t x + b_t)

(``--mmoe-residual``, on by default, adds x: the heads start near the independent heads, as rlayer's
residual does; off, h_t is the mixture alone, as in the paper). Pair tasks mix u and v apart. Tasks
whose head reads every token keep their default heads. The gates' usage (the mean weight of each
expert per task) goes to TensorBoard as ``mmoe/gates/<task>/expert<k>`` every ``--log-every`` steps.
Formula, settings and cost: docs/methods.md.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import torch
import torch.nn as nn

from core.api import Component, Task, TopologyFactory, TrainingRun, Widths, field, hookimpl, positive, positive_or_none
from plugins.methods.experts.blocks import Experts, Gate, MixedHead, log_gate_usage, mix, mixes

PLATFORM_OPT_IN = True
NAME = "mmoe"

log = logging.getLogger("platform")


@attrs.frozen
class MMoEConfig:
    experts: int = field(4, "number of experts, shared by every task", validator=positive)
    width: int | None = field(None, "inner width of each expert (linear, GELU, linear); None: the embedding width",
                              validator=positive_or_none)
    residual: bool = field(True, "add the mixture to the embedding (x + mixture), so each head starts near its "
                                 "default head; off: the heads read the mixture alone, as in the paper")


class GatedMixture(nn.Module):
    """One task's view of the shared experts: x (B, W) -> x + Σ_k g(x)_k · e_k(x) (B, W)."""

    def __init__(self, experts: Experts, gate: Gate, residual: bool):
        super().__init__()
        self.experts = experts  # the same instance in every task's mixture
        self.gate = gate
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = mix(self.gate(x), self.experts(x))  # (B, E), (B, E, W) -> (B, W)
        return x + mixed if self.residual else mixed


def mmoe_heads(settings: MMoEConfig | None, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict:
    """Shared experts, a gate per task, each task's default head over its mixture."""
    config = settings or MMoEConfig()
    width = widths.pooled
    experts = Experts(config.experts, width, config.width or width, dropout)
    labels = [f"expert{k}" for k in range(config.experts)]
    heads: dict[str, nn.Module] = {}
    for task in tasks:
        head = task.build_head(widths, dropout)
        if mixes(task):
            gate = Gate(width, labels, NAME, f"{NAME}/gates/{task.name}")
            head = MixedHead(GatedMixture(experts, gate, config.residual), head)
        heads[task.name] = head
    if not any(mixes(task) for task in tasks):
        log.warning("mmoe: no task of this run reads pooled embeddings; every task keeps its default head")
    return nn.ModuleDict(heads)


def mmoe_space(trial: Any, base: Any) -> dict[str, int]:
    """The number of experts (``mmoe_experts``, 2..8) and their inner width (``mmoe_width``, 64..1024, log)."""
    return {"experts": trial.suggest_int("mmoe_experts", 2, 8),
            "width": trial.suggest_int("mmoe_width", 64, 1024, log=True)}


@hookimpl
def platform_topologies() -> list[Component[TopologyFactory]]:
    return [Component(NAME, mmoe_heads, settings=MMoEConfig, space=mmoe_space,
                      help="MMoE: experts shared by every task, a softmax gate per task, its head over the mixture")]


@hookimpl
def platform_on_log(run: TrainingRun, step: int) -> None:
    log_gate_usage(run, step, NAME)
