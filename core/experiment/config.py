"""A training run's configuration (:class:`RunConfig`): frozen, validated, with help text; saved as the
run folder's ``config.json``. The same class feeds the command line (every field becomes an option),
Optuna trials (``attrs.evolve`` with suggested values) and resumed runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from core.base.errors import ConfigError
from core.base.files import atomic_write
from core.base.settings import (
    assignments,
    build,
    distinct,
    field,
    is_positive,
    names,
    positive,
    positive_or_none,
    shown,
    valid_seed,
)
from core.data.folders import resolve_data_dir
from core.data.tokenizer import Tokenizer
from core.encoder.pooling import parse as parse_pooling
from core.tasks.splits import VALIDATION, SplitData, load_split
from core.tasks.task import Task


def _check_pooling(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    try:
        parse_pooling(value)
    except ValueError as error:
        raise ValueError(f"--pooling: {error}") from None


def _check_layer_decay(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"--layer-decay must be in (0, 1] (1: no decay), got {value}")


MAX_LR = 1.0  # AdamW moves every weight by about lr a step: past 1, the first steps wreck a pretrained encoder


def _check_lr(instance: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not 0.0 < value <= MAX_LR:
        raise ValueError(f"--lr must be in (0, {MAX_LR:g}] (AdamW moves every weight by about the learning rate each "
                         f"step; fine-tuning uses 1e-5 .. 1e-4), got {value}")




def _check_loss_weights(instance: Any, attribute: attrs.Attribute, value: dict[str, float]) -> None:
    unknown = [task for task in value if task not in instance.tasks]
    if instance.tasks and unknown:
        raise ValueError(f"--loss-weights: task {unknown[0]!r} is not among the run's tasks ({', '.join(instance.tasks)})")




DEFAULT_LR = {"finetune": 2e-5, "pretrain": 1e-3}  # by --mode, when --lr is not given


@attrs.frozen
class RunConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run folder."""

    tasks: tuple[str, ...] = field((), "comma-separated task names (default: the tasks their plugins mark default; "
                                       "see `platform plugins`; a run saves the ones it trains)",
                                   converter=names, validator=distinct, metadata={"default": "the default tasks"})
    plugins: tuple[str, ...] = field((), "comma-separated opt-in plugins to enable (see `platform plugins`)",
                                     converter=names, validator=distinct)
    checkpoint: str = field("minilm-l6", "pretrained encoder: a folder (BERT, RoBERTa, DistilBERT, ELECTRA, MPNet, "
                                       "DeBERTa-v2), minilm-l6, mpnet-base (once installed: `platform checkpoints "
                                       "install mpnet-base`), a hub id, or a random-init preset (tiny, small)")
    mode: str = field("finetune", "finetune: train everything; pretrain: freeze the encoder, train the heads",
                      validator=v.in_(("finetune", "pretrain")))
    sampler: str = field("", "how task batches are scheduled: a sampler (see `platform plugins`; default: the one "
                             "marked default; a run saves the one it used)", metadata={"default": "the default sampler"})
    update: str = field("sequential", "sequential: one optimizer step per task batch; summed: one step on the summed loss",
                        validator=v.in_(("sequential", "summed")))
    topology: str = field("", "head topology (default: the one an enabled plugin provides, else the one marked "
                              "default)")
    balancer: str = field("", "how a summed step's task losses become one update, with --update summed (default: the "
                              "one an enabled plugin provides, else equal weighting)")
    pooling: str = field("mean", "sentence embedding: cls ([CLS] of the last layer), mean (over real tokens), pooler "
                                 "(the checkpoint's tanh pooler over [CLS]), cls-concat-K (the [CLS] vectors of the last "
                                 "K layers concatenated: K x hidden size wide), cls-mean-K (their mean)",
                         validator=_check_pooling)
    epochs: int = field(1, "training epochs", validator=v.ge(1))
    length_window: int = field(32, "length bucketing: sort examples by length within windows of this many batches "
                                   "of a task, then shuffle the batches (1: off, random batches)", validator=v.ge(1))
    batch_size: int = field(32, "training batch size (per task batch)", validator=v.ge(1))
    max_batch_tokens: int | None = field(2048, "activation memory bound: a task batch of more padded tokens than this "
                                               "(sequences x longest; both sentences of a pair count) runs its forward "
                                               "and backward in chunks within it, then one update for the whole batch: "
                                               "the same gradient (none: never split)", validator=positive_or_none)
    eval_batch_size: int = field(128, "evaluation batch size", validator=v.ge(1))
    lr: float | None = field(None, "learning rate, at most 1 (none: 2e-5 for finetune, 1e-3 for pretrain; a run saves "
                                   "the value it uses)", validator=_check_lr)
    weight_decay: float = field(0.0, "decoupled weight decay of AdamW, applied to weight matrices and embedding tables "
                                     "only (never to biases or LayerNorm weights)", validator=v.ge(0.0))
    layer_decay: float = field(1.0, "layer-wise learning-rate decay: the top encoder layer, the pooler and the heads "
                                    "train at --lr, each layer below at this factor times the layer above, the "
                                    "embeddings at it times the lowest layer (1: one rate for all)",
                               validator=_check_layer_decay)
    loss_weights: dict[str, float] = field(
        attrs.Factory(dict), "TASK=WEIGHT,...: each task batch's loss times its task's weight before the update (1 for "
                             "tasks not named); logged losses stay unweighted. The tasks' losses differ in scale (STS's "
                             "squared error on [0, 1] is 30-40x smaller than SST's cross-entropy), and AdamW's moments "
                             "are shared by every task's updates",
        converter=assignments(float, "TASK=WEIGHT with WEIGHT > 0, e.g. sts=20", is_positive),
        validator=_check_loss_weights, metadata={"metavar": "TASK=WEIGHT,..."})
    head_lr_multiplier: float = field(1.0, "the task heads (a topology's shared layers included) train at --lr times "
                                           "this: freshly initialised heads may need a larger rate than the "
                                           "pretrained encoder (1: the rate of the top layer)", validator=positive)
    warmup: float = field(0.0, "fraction of training steps of linear warm-up before linear decay (0: constant rate)",
                          validator=[v.ge(0.0), v.le(1.0)])
    dropout: float = field(0.1, "dropout in the encoder and the heads", validator=[v.ge(0.0), v.lt(1.0)])
    seed: int = field(11711, "random seed (model init, sampling, dropout), 0 .. 4294967295", validator=valid_seed)
    max_length: int = field(128, "maximum tokens per sentence, [CLS] and [SEP] included", validator=v.ge(4))
    limit: int | None = field(None, "use at most N examples per task and split (quick runs, tests)", validator=positive_or_none)
    validation_split: float = field(0.0, "fraction of each task's train file held out as the run's validation set "
                                         "(the same rows whatever --seed): every epoch is evaluated on it, best.pt "
                                         "and a study's objective are chosen on it, and dev is evaluated once, on the "
                                         "chosen model, at the end (0: off; epochs are evaluated and chosen on dev)",
                                    validator=[v.ge(0.0), v.lt(1.0)])
    data_dir: str | None = field(None, "folder of the task files (default: $PLATFORM_DATA_DIR, then ../shared/data/cs224n)")
    output_dir: str | None = field(None, "run folder (default runs/<time>-<tasks>)")
    save_every: int = field(200, "steps between resume checkpoints (last.pt) within an epoch", validator=v.ge(1))
    log_every: int = field(20, "steps between logged training losses", validator=v.ge(1))
    threads: int | None = field(None, "torch CPU threads (default: all cores)", validator=positive_or_none)
    device: str = field("auto", "where to compute: cpu, cuda, cuda:N, or auto (the first CUDA GPU if there is one, "
                                "else the CPU)")
    precision: str = field("auto", "fp32; bf16 (autocast: bfloat16 matrix multiplies, float32 weights, optimizer "
                                   "and losses); or auto: bf16 where the hardware computes it natively (CUDA GPUs "
                                   "with bf16, CPUs with AMX or AVX512-BF16), else fp32. A run saves the resolved "
                                   "value", validator=v.in_(("auto", "fp32", "bf16")))
    components: dict[str, dict[str, Any]] = attrs.field(factory=dict, metadata={"help": "", "cli": False})

    @property
    def task_loss_weights(self) -> dict[str, float]:
        """``--loss-weights`` parsed: a weight per task of the run (1 where not given)."""
        return {task: 1.0 for task in self.tasks} | dict(self.loss_weights)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> "RunConfig":
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return build(cls, data, source=source)

    def save(self, path: Path) -> None:
        atomic_write(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        path = Path(path)
        if (path.parent / "pretrain.json").is_file():  # its config.json is the checkpoint's, a BERT config
            raise ConfigError(f"{path.parent} is a `platform pretrain` run folder, not a `platform run` one: continue "
                              f"it with `platform pretrain --resume {path.parent}`, or fine-tune from it with "
                              f"`platform run --checkpoint {path.parent}`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: not a readable run configuration ({getattr(error, 'strerror', None) or error})"
                              ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a run configuration (a JSON object of settings), but a "
                              f"{type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``--option RECORDED (now: NOW)`` for every setting that differs between two configurations in their
    JSON form (``RunConfig.to_dict``, or a study's record of one), component settings by their options."""
    def options(record: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        flat = {f"--{name}".replace("_", "-"): value for name, value in record.items() if name != "components"}
        for component, settings in record.get("components", {}).items():
            if component in other.get("components", {}):
                flat.update({f"--{component}-{name}".replace("_", "-"): value for name, value in settings.items()})
            else:  # a component of one configuration only: its settings in one piece
                flat[f"--{component}-*"] = ", ".join(f"{name}={value}" for name, value in settings.items())
        return flat

    def text(value: Any) -> str:
        return "not set" if value is _UNSET else shown(value)

    old, new = options(recorded, now), options(now, recorded)
    names = [*old, *(name for name in new if name not in old)]
    return [f"{name} {text(old.get(name, _UNSET))} (now: {text(new.get(name, _UNSET))})" for name in names
            if old.get(name, _UNSET) != new.get(name, _UNSET)]


_UNSET = object()


# --------------------------------------------------------------------------------------------------
# attrs classes <-> command-line options
# --------------------------------------------------------------------------------------------------














def load_data(config: RunConfig, tasks: dict[str, Task], tokenizer: Tokenizer, split: str) -> dict[str, SplitData]:
    """``split`` of every task that has it; ``validation`` is held out of the train files
    (``--validation-split``), which ``train`` then leaves out."""
    data_dir = resolve_data_dir(config.data_dir)
    file_split = "train" if split == VALIDATION else split
    return {name: load_split(task, split, data_dir=data_dir, tokenizer=tokenizer, max_length=config.max_length,
                             limit=config.limit, validation_split=config.validation_split)
            for name, task in tasks.items() if file_split in task.spec.files}
