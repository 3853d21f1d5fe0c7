"""Run configuration as data: frozen, validated attrs classes with help text.

The same classes feed the command line (every field becomes an option, see :func:`add_options`),
Optuna trials (``attrs.evolve`` with suggested values) and saved runs (``config.json``).
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from core.errors import ConfigError
from core.pooling import parse as parse_pooling

# --------------------------------------------------------------------------------------------------
# Converters and validators shared by every settings class (a message names the field; build() turns
# it into the option's name)
# --------------------------------------------------------------------------------------------------


def names(value: Any) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if isinstance(value, str):
        value = value.split(",")
    return tuple(name.strip() for name in value if name.strip())


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        positive(instance, attribute, value)


def _check_pooling(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    try:
        parse_pooling(value)
    except ValueError as error:
        raise ValueError(f"--pooling: {error}") from None


def _check_layer_decay(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"--layer-decay must be in (0, 1] (1: no decay), got {value}")


def parse_assignments(text: str, option: str, expected: str, key: str = "task",
                      error: type[ValueError] = ConfigError) -> dict[str, str]:
    """``"sst=8,quora=32"`` -> ``{"sst": "8", "quora": "32"}``: the NAME=VALUE lists that options take
    (sampler ratios, teachers, objective weights, enqueued trials). Raises ``error`` naming ``option``
    and the first entry without a name or a value (``expected`` says what one looks like), or the
    first ``key`` given twice; the caller checks the values."""
    pairs: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not name or not value:
            raise error(f"{option}: bad entry {entry!r}; expected {expected}")
        if name in pairs:
            raise error(f"{option}: {key} {name!r} is given twice in {text!r}")
        pairs[name] = value
    return pairs


def _check_loss_weights(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    parse_loss_weights(value, instance.tasks)


def parse_loss_weights(text: str, tasks: tuple[str, ...]) -> dict[str, float]:
    """``--loss-weights "sts=20,quora=2"`` -> ``{"sts": 20.0, "quora": 2.0}``: tasks of the run, weights > 0."""
    expected = "TASK=WEIGHT with WEIGHT > 0, e.g. sts=20"
    weights = {}
    for task, value in parse_assignments(text, "--loss-weights", expected, error=ValueError).items():
        try:
            weight = float(value)
        except ValueError:
            weight = 0.0
        if not weight > 0:
            raise ValueError(f"--loss-weights: bad entry {task}={value}; expected {expected}")
        if task not in tasks:
            raise ValueError(f"--loss-weights: task {task!r} is not among the run's tasks ({', '.join(tasks)})")
        weights[task] = weight
    return weights


def field(default: Any, help: str, metadata: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A settings field with its help text. ``metadata`` shapes its option (:func:`add_options`):
    ``metavar``, ``choices``, ``default`` (the text shown), ``flag`` (a switch), ``repeatable``,
    ``positional`` (its name in the usage line), ``cli`` (False: no option)."""
    return attrs.field(default=default, metadata={"help": help, **(metadata or {})}, **kwargs)


DEFAULT_LR = {"finetune": 2e-5, "pretrain": 1e-3}  # by --mode, when --lr is not given


@attrs.frozen
class RunConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run folder."""

    tasks: tuple[str, ...] = field(("sst", "quora", "sts"), "comma-separated task names", converter=names,
                                   validator=v.min_len(1))
    plugins: tuple[str, ...] = field((), "comma-separated opt-in plugins to enable (see `platform plugins`)",
                                     converter=names)
    checkpoint: str = field("minilm-l6", "pretrained encoder: a folder, minilm-l6, a hub id, or a random-init preset (tiny, small)")
    mode: str = field("finetune", "finetune: train everything; pretrain: freeze the encoder, train the heads",
                      validator=v.in_(("finetune", "pretrain")))
    sampler: str = field("interleaved", "how task batches are scheduled (see `platform plugins`)")
    update: str = field("sequential", "sequential: one optimizer step per task batch; summed: one step on the summed loss",
                        validator=v.in_(("sequential", "summed")))
    topology: str = field("", "head topology; empty: the one an enabled plugin provides, else 'independent'")
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
    lr: float | None = field(None, "learning rate (none: 2e-5 for finetune, 1e-3 for pretrain; a run saves the value "
                                   "it uses)", validator=positive_or_none)
    weight_decay: float = field(0.0, "decoupled weight decay of AdamW, applied to weight matrices and embedding tables "
                                     "only (never to biases or LayerNorm weights)", validator=v.ge(0.0))
    layer_decay: float = field(1.0, "layer-wise learning-rate decay: the top encoder layer, the pooler and the heads "
                                    "train at --lr, each layer below at this factor times the layer above, the "
                                    "embeddings at it times the lowest layer (1: one rate for all)",
                               validator=_check_layer_decay)
    loss_weights: str = field("", "TASK=WEIGHT,...: each task batch's loss times its task's weight before the "
                                  "update (1 for tasks not named); logged losses stay unweighted. The tasks' losses "
                                  "differ in scale (STS's squared error on [0, 1] is 30-40x smaller than SST's "
                                  "cross-entropy), and AdamW's moments are shared by every task's updates",
                              validator=_check_loss_weights, metadata={"metavar": "TASK=WEIGHT,..."})
    head_lr_multiplier: float = field(1.0, "the task heads (a topology's shared layers included) train at --lr times "
                                           "this: freshly initialised heads may need a larger rate than the "
                                           "pretrained encoder (1: the rate of the top layer)", validator=positive)
    warmup: float = field(0.0, "fraction of training steps of linear warm-up before linear decay (0: constant rate)",
                          validator=[v.ge(0.0), v.le(1.0)])
    dropout: float = field(0.1, "dropout in the encoder and the heads", validator=[v.ge(0.0), v.lt(1.0)])
    seed: int = field(11711, "random seed (model init, sampling, dropout)")
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
        return {task: 1.0 for task in self.tasks} | parse_loss_weights(self.loss_weights, self.tasks)

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
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()), source=str(path))


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

    def shown(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ",".join(map(str, value)) or "none"
        return "none" if value is None else "not set" if value is _UNSET else str(value)

    old, new = options(recorded, now), options(now, recorded)
    names = [*old, *(name for name in new if name not in old)]
    return [f"{name} {shown(old.get(name, _UNSET))} (now: {shown(new.get(name, _UNSET))})" for name in names
            if old.get(name, _UNSET) != new.get(name, _UNSET)]


_UNSET = object()


# --------------------------------------------------------------------------------------------------
# attrs classes <-> command-line options
# --------------------------------------------------------------------------------------------------


def _parser_for(annotation: Any):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    if base in (int, float):
        return lambda text: None if text.lower() == "none" else base(text)
    if base is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on")
    return str


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "") -> None:
    """Add ``--[prefix-]field-name`` for every field of the attrs class ``cls``; defaults stay unset
    (``argparse.SUPPRESS``) so only what the user typed overrides a base configuration."""
    hints = typing.get_type_hints(cls)
    for f in attrs.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
        shown = meta.get("default", ",".join(default) if isinstance(default, tuple) else default)
        dest = f"{prefix}{f.name}".replace("-", "_")
        if "positional" in meta:
            parser.add_argument(dest, metavar=meta["positional"], help=meta.get("help", ""))
            continue
        option = {"dest": dest, "default": argparse.SUPPRESS, "help": f"{meta.get('help', '')} (default: {shown})"}
        if meta.get("flag"):
            option.update(action="store_true", help=meta.get("help", ""))
        else:
            option.update(type=_parser_for(hints[f.name]), metavar=meta.get("metavar"), choices=meta.get("choices"))
            if meta.get("repeatable"):
                option.update(action="append", type=str)
        parser.add_argument(f"--{prefix}{f.name.replace('_', '-')}", **option)


def options_given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` the user set on the command line, by field name."""
    given = vars(args)
    return {f.name: given[f"{prefix}{f.name}".replace("-", "_")] for f in attrs.fields(cls)
            if f"{prefix}{f.name}".replace("-", "_") in given}


def build(cls: type, values: dict[str, Any], source: str = "", prefix: str = "") -> Any:
    """``cls(**values)``; a bad value is reported naming its option (``--[prefix]field-name``), after
    ``source`` (where the values came from: a file, a component) when given."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)  # attrs' in_ adds args
        message = _name_option(text, cls, prefix)
        raise ConfigError(f"{source}: {message}" if source else message) from None


def _name_option(message: str, cls: type, prefix: str) -> str:
    """attrs' validators say ``'epochs' must be >= 1: 0``, ours ``ratios: bad entry ...``: either way,
    the field's option instead of its name."""
    for f in attrs.fields(cls):
        option = f"--{prefix}{f.name}".replace("_", "-")
        for lead, replacement in ((f"'{f.name}' ", f"{option} "), (f"{f.name}: ", f"{option}: "),
                                  (f"{f.name} ", f"{option} ")):
            if message.startswith(lead):
                return replacement + message[len(lead):]
    return message


def check_folder(path: str | Path, option: str, hint: str = "choose a folder (a new one is made)") -> None:
    """Refuse a folder option that names an existing file, or a path below one (no folder can be made
    there); ``hint`` says what would be right."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if candidate.is_dir():
                return
            where = f"{path} is a file" if candidate == path else f"{path}: {candidate} is a file"
            raise ConfigError(f"{option} {where}, not a folder; {hint}")
