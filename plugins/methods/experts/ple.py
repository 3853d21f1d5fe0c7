"""ple plugin (opt-in: --plugins ple): Progressive Layered Extraction heads (Tang et al., RecSys 2020);
one level is CGC, Customized Gate Control.

Each level holds S experts shared by every task and P experts of each task's own. Task t's gate mixes
the shared experts and its own, reading t's representation; below the last level a shared gate mixes
every expert of the level (the shared ones and every task's), reading the shared representation, and
feeds the next level's shared experts. With x the pooled embedding (every representation at level 0):

    h_t^l = Σ_k g_t^l(h_t^{l-1})_k · [E_s^l(h_s^{l-1}); E_t^l(h_t^{l-1})]_k
    h_s^l = Σ_k g_s^l(h_s^{l-1})_k · [E_s^l(h_s^{l-1}); E_1^l(h_1^{l-1}); …; E_T^l(h_T^{l-1})]_k

and the head of task t reads x + h_t^L (``--ple-residual``, on by default; off: h_t^L alone). A batch
holds one task's examples, so a level below the last runs every task's branch on them (the shared
gate needs every task's experts), and the last level only the batch's task's. Pair tasks extract u and
v apart; tasks whose head reads every token keep their default heads. The gates' usage goes to
TensorBoard as ``ple/gates/level<l>/<task>/{shared<k>,own<k>}`` (the batch's task's gate, on its own
examples) and ``ple/shared_gates/level<l>/{shared<k>,<task>_own<k>}``. Formula, settings and cost:
docs/methods.md.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import attrs
import torch
import torch.nn as nn

from core.api import Component, Task, TopologyFactory, TrainingRun, Widths, field, hookimpl, positive, positive_or_none
from plugins.methods.experts.blocks import Experts, Gate, MixedHead, log_gate_usage, mix, mixes

PLATFORM_OPT_IN = True
NAME = "ple"

log = logging.getLogger("platform")


@attrs.frozen
class PLEConfig:
    shared_experts: int = field(2, "experts shared by every task, in each level", validator=positive)
    task_experts: int = field(1, "experts of each task's own, in each level", validator=positive)
    levels: int = field(2, "extraction levels stacked; 1: CGC (customized gate control, no shared gate)",
                        validator=positive)
    width: int | None = field(None, "inner width of each expert (linear, GELU, linear); None: the embedding width",
                              validator=positive_or_none)
    residual: bool = field(True, "add the last level's output to the embedding (x + h), so each head starts near "
                                 "its default head; off: the heads read the extracted representation alone")


class Level(nn.Module):
    """One extraction level (a CGC layer): shared experts, each task's own experts, a gate per task over
    (shared + own), and, below the last level, a shared gate over every expert of the level."""

    def __init__(self, tasks: list[str], config: PLEConfig, hidden_size: int, dropout: float, number: int,
                 last: bool):
        super().__init__()
        inner = config.width or hidden_size
        self.shared = Experts(config.shared_experts, hidden_size, inner, dropout)
        self.own = nn.ModuleDict({task: Experts(config.task_experts, hidden_size, inner, dropout) for task in tasks})
        shared = [f"shared{k}" for k in range(config.shared_experts)]
        own = [f"own{k}" for k in range(config.task_experts)]
        self.gates = nn.ModuleDict({task: Gate(hidden_size, shared + own, NAME, f"{NAME}/gates/level{number}/{task}")
                                    for task in tasks})
        every = shared + [f"{task}_{label}" for task in tasks for label in own]
        self.shared_gate = None if last else Gate(hidden_size, every, NAME, f"{NAME}/shared_gates/level{number}")

    def task_output(self, task: str, state: torch.Tensor, shared: torch.Tensor, record: bool) -> torch.Tensor:
        """h_t: task ``task``'s gate over the shared experts' outputs ``shared`` (B, S, W) and its own on
        ``state`` (B, W) -> (B, W)."""
        outputs = torch.cat([shared, self.own[task](state)], dim=1)  # (B, S + P, W)
        return mix(self.gates[task](state, record), outputs)


class Extraction(nn.Module):
    """The stacked levels, shared by every mixing task's head: (x (B, W), task) -> h_task^L (B, W)."""

    def __init__(self, tasks: list[str], config: PLEConfig, hidden_size: int, dropout: float):
        super().__init__()
        self.tasks = tasks
        self.levels = nn.ModuleList(Level(tasks, config, hidden_size, dropout, number, number == config.levels)
                                    for number in range(1, config.levels + 1))

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        levels = cast(list[Level], list(self.levels))
        states, shared = dict.fromkeys(self.tasks, x), x  # level 0: every representation is x
        for level in levels[:-1]:
            experts = level.shared(shared)  # (B, S, W)
            own = {name: level.own[name](states[name]) for name in self.tasks}  # (B, P, W) each
            states = {name: mix(level.gates[name](states[name], record=name == task),
                                torch.cat([experts, own[name]], dim=1)) for name in self.tasks}
            assert level.shared_gate is not None  # every level but the last has one
            shared = mix(level.shared_gate(shared), torch.cat([experts, *own.values()], dim=1))  # (B, W)
        last = levels[-1]
        return last.task_output(task, states[task], last.shared(shared), record=True)


class TaskExtraction(nn.Module):
    """One task's view of the shared extraction: x (B, W) -> x + h_task^L(x) (B, W)."""

    def __init__(self, extraction: Extraction, task: str, residual: bool):
        super().__init__()
        self.extraction = extraction  # the same instance in every task's view
        self.task = task
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extracted = self.extraction(x, self.task)
        return x + extracted if self.residual else extracted


def ple_heads(settings: PLEConfig | None, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict:
    """Shared levels of experts over the tasks that read pooled embeddings, each task's default head
    over its extracted representation; other tasks keep their default heads."""
    config = settings or PLEConfig()
    mixing = [task.name for task in tasks if mixes(task)]
    if not mixing:
        log.warning("ple: no task of this run reads pooled embeddings; every task keeps its default head")
    extraction = Extraction(mixing, config, widths.pooled, dropout) if mixing else None
    heads: dict[str, nn.Module] = {}
    for task in tasks:
        head = task.build_head(widths, dropout)
        if extraction is not None and task.name in mixing:
            head = MixedHead(TaskExtraction(extraction, task.name, config.residual), head)
        heads[task.name] = head
    return nn.ModuleDict(heads)


def ple_space(trial: Any, base: Any) -> dict[str, int]:
    """Shared experts per level (``ple_shared_experts``, 1..4), each task's own (``ple_task_experts``, 1..2),
    levels (``ple_levels``, 1..3) and the experts' inner width (``ple_width``, 64..1024, log)."""
    return {"shared_experts": trial.suggest_int("ple_shared_experts", 1, 4),
            "task_experts": trial.suggest_int("ple_task_experts", 1, 2),
            "levels": trial.suggest_int("ple_levels", 1, 3),
            "width": trial.suggest_int("ple_width", 64, 1024, log=True)}


@hookimpl
def platform_topologies() -> list[Component[TopologyFactory]]:
    return [Component(NAME, ple_heads, settings=PLEConfig, space=ple_space,
                      help="PLE: shared and task-specific experts in stacked levels, a gate per task (one level: "
                           "CGC)")]


@hookimpl
def platform_on_log(run: TrainingRun, step: int) -> None:
    log_gate_usage(run, step, NAME)
