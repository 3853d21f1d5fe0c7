"""lora plugin (opt-in: --plugins lora): low-rank adapters on the encoder's projections, the encoder frozen.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685): a frozen
projection ``W x + b`` (W: out x in) gets a trainable update of rank r,

    h = W x + b + (alpha / r) B A dropout(x),    A: r x in (Kaiming-uniform), B: out x r (zero),

so a fresh adapter changes nothing and training starts from the checkpoint's function. Everything in the
encoder is frozen, embeddings, LayerNorms, biases and the pooler included, as in the paper; the task heads
train, with layer-wise rate decay and ``--head-lr-multiplier`` as usual (an adapter trains at the rate of
the layer it sits in). The optimizer holds only the adapters and the heads, so AdamW's state shrinks from
two copies of the encoder to two copies of the adapters (``make bench-lora``).

Which projections: ``--lora-targets``, names matched against the path of every ``nn.Linear`` inside a
transformer layer (the part after the layer's index: ``attention.self.query``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense`` in BERT). A plain name matches the last part (``query``,
``value``, ``dense``: all three dense layers); a dotted name or a glob matches the whole path
(``attention.output.dense``, ``output.dense``: the feed-forward output only, ``attention.*``, ``*``). Every
architecture is targeted by its own names (its ``layers``); ``query``, ``key`` and ``value`` also match the
other built-in architectures' names for them (DistilBERT's ``q_lin``, MPNet's ``q``, DeBERTa-v2's
``query_proj``, ...), so the default targets fit every one.

Shared or per task (``--lora-per-task``): shared adapters are one set for every task; per-task adapters give
each task its own set on the same frozen encoder. The model's forward of a batch makes its task the current
one (a forward pre-hook on the multitask model reads ``batch.task``, and a forward hook clears it), so each
task's forward, DDP's and a regularizer's extra forwards included, goes through its own adapters; running
the encoder outside a task's forward with per-task adapters is an error.

At the end of training shared adapters are merged, ``W <- W + (alpha / r) B A``: ``best.pt`` is rewritten
with the plain encoder (the checkpoint's own parameter names: it loads into a model built without the
plugin). ``platform evaluate`` / ``predict`` rebuild the model from the run's saved configuration, which
enables the plugin again; a model with adapters loads a state without any adapter parameter as merged
weights with zero adapters, which compute the same outputs. Per-task adapters stay unmerged (merging would
make one encoder per task): ``best.pt`` holds them, and evaluation uses each task's own.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from typing import Any

import attrs
import torch
import torch.nn as nn
import torch.nn.functional as F
from attrs import validators as v

from core.api import (
    Component,
    ConfigError,
    Encoder,
    ModelTransform,
    MultitaskModel,
    PlatformError,
    RunConfig,
    TrainingRun,
    field,
    hookimpl,
    is_main,
    names,
    positive,
)

PLATFORM_OPT_IN = True
NAME = "lora"
SHARED = "shared"  # the adapter key of shared adapters; per-task adapters are keyed by task name

log = logging.getLogger("platform")


def _some(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must name at least one projection (e.g. query,value)")


@attrs.frozen
class LoRAConfig:
    rank: int = field(8, "r, the rank of every adapter (at most the narrower width of its projection)",
                      validator=[v.instance_of(int), positive])
    alpha: float = field(8.0, "alpha: an adapter's update is scaled by alpha / rank (the paper sets alpha to the "
                              "first rank it tries and leaves it there)", converter=float, validator=positive)
    dropout: float = field(0.0, "dropout on an adapter's input (the frozen projection sees the input as it is)",
                           converter=float, validator=[v.ge(0.0), v.lt(1.0)])
    targets: tuple[str, ...] = field(("query", "value"), "comma-separated projections to adapt, by their path inside "
                                     "a layer: a plain name matches its last part (query, key, value, dense), a dotted "
                                     "name or glob the whole path (attention.output.dense, intermediate.dense, "
                                     "output.dense, attention.*, *)", converter=names, validator=_some)
    per_task: bool = field(False, "one set of adapters per task (kept unmerged) instead of one shared set (merged "
                                  "into the encoder at the end)")


# --------------------------------------------------------------------------------------------------
# The adapted projection
# --------------------------------------------------------------------------------------------------


class CurrentTask:
    """Which task's adapters a per-task forward uses: set from ``batch.task`` around the multitask model's
    forward (hooks are bound methods, so a deep copy of the model keeps its own switch)."""

    def __init__(self) -> None:
        self.task: str | None = None

    def enter(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batch = args[0] if args else kwargs["batch"]
        self.task = batch.task

    def leave(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        self.task = None


class LoRALinear(nn.Linear):
    """A frozen ``nn.Linear`` (the same weight and bias, under the same names) plus low-rank adapters:
    ``lora_A[key]`` (r, in) and ``lora_B[key]`` (out, r), ``key`` "shared" or a task's name."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, dropout: float, keys: list[str],
                 current: CurrentTask | None = None):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        self.weight = linear.weight  # the checkpoint's tensors themselves, frozen by the caller
        self.bias = linear.bias
        self.rank, self.scaling = rank, alpha / rank
        self.current = current  # None: one shared adapter
        device = linear.weight.device
        self.lora_A = nn.ParameterDict({key: nn.Parameter(torch.empty(rank, self.in_features, device=device))
                                        for key in keys})
        self.lora_B = nn.ParameterDict({key: nn.Parameter(torch.zeros(self.out_features, rank, device=device))
                                        for key in keys})
        for A in self.lora_A.values():
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))  # as the paper's reference code (loralib) initialises A
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def key(self) -> str:
        if self.current is None:
            return SHARED
        if self.current.task is None:
            raise PlatformError("lora: per-task adapters need a task, and the encoder ran outside a task's forward "
                                "(call the multitask model with a batch)")
        return self.current.task

    def delta(self, key: str = SHARED) -> torch.Tensor:
        """The dense update (alpha / r) B A of adapter ``key``, (out, in)."""
        return self.scaling * self.lora_B[key] @ self.lora_A[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = self.key()
        low = self.lora_dropout(x) @ self.lora_A[key].T  # (..., r)
        return F.linear(x, self.weight, self.bias) + self.scaling * (low @ self.lora_B[key].T)  # (..., out)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what the shared adapter computes: weight W + (alpha / r) B A."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        with torch.no_grad():
            linear.weight = nn.Parameter(self.weight + self.delta().to(self.weight.dtype),
                                         requires_grad=self.weight.requires_grad)
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}, adapters={list(self.lora_A)}"


# --------------------------------------------------------------------------------------------------
# Finding the projections, adapting, merging
# --------------------------------------------------------------------------------------------------


# the attention projections as the built-in architectures name them (BERT, RoBERTa, ELECTRA; DistilBERT; MPNet;
# DeBERTa-v2): a plain target among them matches them all, so the default targets fit every one
ALIASES = {role: names for names in (("query", "q_lin", "q", "query_proj"), ("key", "k_lin", "k", "key_proj"),
                                     ("value", "v_lin", "v", "value_proj")) for role in names}


def layer_projections(encoder: Encoder) -> list[tuple[nn.Module, str, nn.Linear]]:
    """Every ``nn.Linear`` inside a transformer layer of ``encoder`` (``encoder.layers``), lowest layer first:
    (its layer, its path inside the layer, itself). A projection outside the layers (the pooler) is never a
    target."""
    return [(layer, inner, module) for layer in encoder.layers for inner, module in layer.named_modules()
            if isinstance(module, nn.Linear)]


def matches(target: str, inner: str) -> bool:
    """Whether ``target`` names the projection at ``inner`` (its path inside a layer): a plain name its
    last part (``query`` also another architecture's name for it, see :data:`ALIASES`), a dotted name or a
    glob the whole path."""
    if "." not in target and not any(c in target for c in "*?["):
        return inner.rsplit(".", 1)[-1] in ALIASES.get(target, (target,))
    return fnmatch.fnmatchcase(inner, target)


def chosen(settings: LoRAConfig, encoder: Encoder) -> list[tuple[nn.Module, str, nn.Linear]]:
    """The projections ``settings.targets`` name (as :func:`layer_projections` gives them); a target naming
    none is refused, and so is a rank above a chosen projection's narrower width."""
    projections = layer_projections(encoder)
    inner_paths = sorted({inner for _, inner, _ in projections})
    for target in settings.targets:
        if not any(matches(target, inner) for inner in inner_paths):
            raise ConfigError(f"--lora-targets: {target!r} names no projection of the encoder's layers; they are "
                              f"{', '.join(inner_paths) or 'none'} (a plain name matches the last part)")
    picked = [(layer, inner, linear) for layer, inner, linear in projections
              if any(matches(target, inner) for target in settings.targets)]
    for _, inner, linear in picked:
        if settings.rank > min(linear.in_features, linear.out_features):
            raise ConfigError(f"--lora-rank {settings.rank} is above the width of {inner} ({linear.in_features} -> "
                              f"{linear.out_features}); use at most {min(linear.in_features, linear.out_features)}")
    return picked


def replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def adapters(model: nn.Module) -> dict[str, LoRALinear]:
    return {path: module for path, module in model.named_modules() if isinstance(module, LoRALinear)}


def add_adapters(settings: LoRAConfig | None, model: MultitaskModel, config: RunConfig) -> None:
    """Freeze ``model``'s encoder and put adapters on the projections ``settings`` name (the model
    transform of ``--plugins lora``)."""
    settings = settings or LoRAConfig()
    if config.mode == "pretrain":
        raise ConfigError("--plugins lora trains adapters inside the encoder, which --mode pretrain freezes; "
                          "use --mode finetune")
    picked = chosen(settings, model.encoder)
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    current = CurrentTask() if settings.per_task else None
    keys = list(model.tasks) if settings.per_task else [SHARED]
    for layer, inner, linear in picked:
        replace(layer, inner, LoRALinear(linear, settings.rank, settings.alpha, settings.dropout, keys, current))
    if current is not None:
        model.register_forward_pre_hook(current.enter, with_kwargs=True)
        model.register_forward_hook(current.leave, with_kwargs=True, always_call=True)
    model.register_load_state_dict_pre_hook(MergedLoader())


class MergedLoader:
    """A state without any adapter parameter loads as merged weights: every adapter gets B = 0 (and keeps
    its A), so it adds nothing to the weights it loads. A state with some adapters loads strictly."""

    def __call__(self, model: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
        if any(".lora_A." in key or ".lora_B." in key for key in state):
            return
        for path, module in adapters(model).items():
            for key, A in module.lora_A.items():
                state.setdefault(f"{prefix}{path}.lora_A.{key}", A.detach())
                state.setdefault(f"{prefix}{path}.lora_B.{key}", torch.zeros_like(module.lora_B[key]))


def merge_adapters(model: nn.Module) -> int:
    """Merge every shared adapter of ``model`` into its projection (plain ``nn.Linear`` s again); returns how
    many were merged. Per-task adapters are left as they are."""
    merged = 0
    for path, module in adapters(model).items():
        if module.current is None:
            replace(model, path, module.merged())
            merged += 1
    return merged


# --------------------------------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------------------------------


@hookimpl
def platform_on_train_end(run: TrainingRun) -> None:
    """The model in hand is the best one: merge its shared adapters and write ``best.pt`` with the merged
    encoder (per-task adapters stay in ``best.pt`` as they are)."""
    found = adapters(run.model)
    if not found:
        return
    if any(module.current is not None for module in found.values()):
        log.info("lora: per-task adapters are kept unmerged in best.pt (merging would make one encoder per task)")
        return
    merged = merge_adapters(run.model)
    if is_main() and (run.output_dir / "best.pt").exists():
        run.folder.save("best.pt", {**run.folder.load("best.pt"), "model": run.model.state_dict()})
    log.info("lora: merged %d adapters into the encoder; %s holds the merged weights", merged,
             run.output_dir / "best.pt")


def lora_space(trial: Any, base: Any) -> dict[str, Any]:
    """r, alpha, adapter dropout and which projections, around the paper's GLUE settings (r 8, alpha 8, query
    and value)."""
    return {
        "rank": trial.suggest_categorical("lora_rank", [4, 8, 16, 32]),
        "alpha": trial.suggest_categorical("lora_alpha", [8.0, 16.0, 32.0]),
        "dropout": trial.suggest_float("lora_dropout", 0.0, 0.2),
        "targets": trial.suggest_categorical("lora_targets", ["query,value", "query,key,value", "*"]),
    }


@hookimpl
def platform_model_transforms() -> list[Component[ModelTransform]]:
    return [Component(NAME, add_adapters, settings=LoRAConfig, space=lora_space,
                      help="LoRA: low-rank adapters on the encoder's projections, the encoder frozen, merged at the "
                           "end")]
