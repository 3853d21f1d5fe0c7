"""rlayer plugin (opt-in: --plugins rlayer): sentence-pair tasks share one relational layer.

The shared layer reads the scaled Hadamard product h_u∘h_v / (‖h_u‖·‖h_v‖ + ε), whose features sum
to the cosine similarity of the pair, optionally beside |h_u − h_v|, through
``linear -> LeakyReLU -> linear`` back to the embedding width. Each sharing task keeps an output
layer of its own, as wide as its kind's outputs (class logits, or one score). The tasks whose kind
feeds the head two sentence embeddings (``head_input == "pair"``) can share it; every other task gets
its own or its kind's default head.

Two choices make it learn at fine-tuning rates (the first version predicted Quora's majority class
and lost 8 points of STS after an epoch):

- ``--rlayer-scale hidden`` (default) multiplies the product by the width H: each of its features is
  about 1/H, too small for the first linear layer to move its output at lr 2e-5; times H they are of
  unit size and their mean is the cosine. ``layernorm`` normalizes them instead (which removes their
  mean, the cosine); ``none`` keeps them as they are.
- ``--rlayer-residual`` (default on) adds each head's relational output to the task's default head
  (the cosine for STS, SBERT's [u; v; |u − v|] classifier for Quora), with the output layer
  initialised to zero: the topology starts as the independent heads do, and the shared layer learns a
  correction on top.
"""

from __future__ import annotations

import logging

import attrs
import torch
import torch.nn as nn
from attrs import validators as v

from core.api import Component, ConfigError, Task, TopologyFactory, Widths, field, hookimpl, names, positive_or_none

PLATFORM_OPT_IN = True
SCALES = ("hidden", "layernorm", "none")

log = logging.getLogger("platform")


@attrs.frozen
class RLayerConfig:
    tasks: tuple[str, ...] = field((), "comma-separated pair tasks that share the relational layer; empty: every "
                                       "task of the run whose kind relates two sentence embeddings", converter=names)
    width: int | None = field(None, "inner width of the relational layer; None: the embedding width",
                              validator=positive_or_none)
    negative_slope: float = field(0.01, "negative slope of the LeakyReLU", validator=v.ge(0.0))
    with_difference: bool = field(False, "also feed |h_u - h_v| beside the scaled Hadamard product (the first "
                                         "linear then takes twice the embedding width)")
    eps: float = field(1e-8, "added to the norm product that scales the Hadamard product", validator=v.gt(0.0))
    scale: str = field("hidden", "feature scaling of the scaled Hadamard product, whose features are about 1/H each: "
                                 "hidden (times H: unit-sized features whose mean is the cosine), layernorm (a "
                                 "LayerNorm over them), none", validator=v.in_(SCALES), metadata={"choices": SCALES})
    residual: bool = field(True, "add each head's relational output to the task's default head (cosine for a pair "
                                 "score, [u; v; |u - v|] for pair classes), its output layer initialised to zero, so "
                                 "training starts from the default heads; off: the relational output alone")


def scaled_hadamard(u: torch.Tensor, v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """h_u∘h_v / (‖h_u‖·‖h_v‖ + ε), (B, H) each -> (B, H); its sum over features is cos(u, v)."""
    norms = u.norm(dim=-1, keepdim=True) * v.norm(dim=-1, keepdim=True)  # (B, 1)
    return u * v / (norms + eps)


class RelationalLayer(nn.Module):
    """(u, v) -> (B, H): the relation of a pair, ``linear -> LeakyReLU -> linear``."""

    def __init__(self, hidden_size: int, width: int | None = None, negative_slope: float = 0.01,
                 with_difference: bool = False, eps: float = 1e-8, scale: str = "hidden"):
        super().__init__()
        width = width or hidden_size
        self.with_difference = with_difference
        self.eps = eps
        self.scale = scale
        self.norm = nn.LayerNorm(hidden_size) if scale == "layernorm" else None
        self.inner = nn.Linear((2 if with_difference else 1) * hidden_size, width)
        self.act = nn.LeakyReLU(negative_slope)
        self.outer = nn.Linear(width, hidden_size)

    def product(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The scaled Hadamard product as the first layer reads it (``scale``), (B, H)."""
        features = scaled_hadamard(u, v, self.eps)  # (B, H), each about 1/H
        if self.scale == "hidden":
            return features * features.shape[-1]  # unit-sized, their mean the cosine
        return self.norm(features) if self.norm is not None else features

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        features = self.product(u, v)  # (B, H)
        if self.with_difference:
            features = torch.cat([features, (u - v).abs()], dim=-1)  # (B, 2H)
        return self.outer(self.act(self.inner(features)))  # (B, H)


class RelationalHead(nn.Module):
    """A task's own output layer on top of the shared relational layer; with a ``default`` head (the
    residual form), the sum of the two, the output layer starting at zero so the sum starts as the
    default head."""

    def __init__(self, relation: RelationalLayer, hidden_size: int, outputs: int, dropout: float,
                 default: nn.Module | None = None):
        super().__init__()
        self.relation = relation  # the same instance in every sharing head
        self.default = default
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, outputs)
        if default is not None:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        output = self.out(self.dropout(self.relation(u, v)))  # (B, num_labels) or (B, 1)
        return output if self.default is None else self.default(u, v) + output


def is_pair(task: Task) -> bool:
    return task.kind.head_input == "pair"


def sharing_tasks(config: RLayerConfig, tasks: list[Task]) -> list[Task]:
    """The tasks that share the relational layer: ``config.tasks``, checked, or every pair task."""
    by_name = {task.name: task for task in tasks}
    pair = [task.name for task in tasks if is_pair(task)]
    if not config.tasks:
        return [by_name[name] for name in pair]
    for name in config.tasks:
        if name not in by_name:
            raise ConfigError(f"--rlayer-tasks: task {name!r} is not a task of this run; its pair tasks are: "
                              f"{', '.join(pair) or 'none'}")
        if not is_pair(by_name[name]):
            raise ConfigError(f"--rlayer-tasks: task {name!r} is of kind {by_name[name].kind.name}, whose head does "
                              f"not relate two sentence embeddings; choose among: {', '.join(pair) or 'none'}")
    return [by_name[name] for name in dict.fromkeys(config.tasks)]


def relational_heads(settings: RLayerConfig | None, tasks: list[Task], widths: Widths, dropout: float) -> nn.ModuleDict:
    """Pair tasks share one relational layer under heads of their own; other tasks get their heads."""
    config = settings or RLayerConfig()
    sharing = {task.name for task in sharing_tasks(config, tasks)}
    if not sharing:
        log.warning("rlayer: no pair task in this run shares the relational layer; every task gets its default head")
    width = widths.pooled
    relation = RelationalLayer(width, config.width, config.negative_slope, config.with_difference, config.eps,
                               config.scale)
    heads: dict[str, nn.Module] = {}
    for task in tasks:
        if task.name in sharing:
            default = task.build_head(widths, dropout) if config.residual else None
            heads[task.name] = RelationalHead(relation, width, task.kind.outputs(task.spec), dropout, default)
        else:
            heads[task.name] = task.build_head(widths, dropout)
    return nn.ModuleDict(heads)


@hookimpl
def platform_topologies() -> list[Component[TopologyFactory]]:
    return [Component("rlayer", relational_heads, settings=RLayerConfig,
                      help="pair tasks share one relational layer over the scaled Hadamard product, each with its own "
                           "output added to its default head")]
