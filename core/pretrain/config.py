"""The configuration of a further-pretraining run (``platform pretrain``), saved as ``pretrain.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from core.base.devices import resolve_device, resolve_precision
from core.base.errors import ConfigError
from core.base.settings import build, field, names, positive_or_none, valid_seed
from core.experiment.folder import claim_new_name

RUN_CONFIG = "pretrain.json"


def _unique(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if len(set(value)) < len(value):
        raise ValueError(f"--text names a source twice: {','.join(value)}")


@attrs.frozen
class PretrainConfig:
    """Everything that defines a further-pretraining run; saved as ``pretrain.json`` in its folder."""

    text: tuple[str, ...] = field(("sst", "quora", "sts"), "comma-separated text sources: task names (their train "
                                                          "split only) and/or UTF-8 text files (one text per line)",
                                  converter=names, validator=[v.min_len(1), _unique])
    checkpoint: str = field("minilm-l6", "encoder to continue from: a folder, minilm-l6, a hub id, or a preset; "
                                         "its MLM head (cls.predictions.*) is loaded when it has one")
    masker: str = field("", "which tokens to predict: a masker (see `platform plugins`; default: the one marked "
                            "default; a run saves the one it used)")
    steps: int = field(1000, "optimizer steps", validator=v.ge(1))
    batch_size: int = field(32, "packed sequences per step", validator=v.ge(1))
    max_length: int = field(128, "tokens per packed sequence, [CLS] and [SEP]s included", validator=v.ge(3))
    mask_rate: float = field(0.15, "share of the (non-special) tokens of a sequence to predict",
                             validator=[v.gt(0.0), v.lt(1.0)])
    mask_token: float = field(0.8, "share of the predicted tokens replaced by [MASK]", validator=[v.ge(0.0), v.le(1.0)])
    random_token: float = field(0.1, "share of the predicted tokens replaced by a random token (the rest keep "
                                     "theirs)", validator=[v.ge(0.0), v.le(1.0)])
    lr: float = field(1e-4, "peak learning rate, at most 1", validator=[v.gt(0.0), v.le(1.0)])
    warmup: float = field(0.06, "fraction of the steps of linear warm-up before linear decay to 0 (0: constant rate)",
                          validator=[v.ge(0.0), v.le(1.0)])
    weight_decay: float = field(0.01, "decoupled weight decay (weight matrices and embeddings only)",
                                validator=v.ge(0.0))
    dropout: float = field(0.1, "dropout in the encoder", validator=[v.ge(0.0), v.lt(1.0)])
    head_only: bool = field(False, "train the MLM head only, the encoder frozen (its tied decoder weight, the "
                                   "word embeddings, too): fits a fresh head before measuring a checkpoint's "
                                   "held-out perplexity")
    heldout_every: int = field(50, "every Nth packed sequence is held out (never trained on) for the perplexity",
                               validator=v.ge(2))
    eval_every: int = field(500, "steps between held-out evaluations (also at the start and the end)",
                            validator=v.ge(1))
    eval_batch_size: int = field(64, "held-out sequences per forward", validator=v.ge(1))
    seed: int = field(11711, "random seed (head init, data order, masks, dropout), 0 .. 4294967295",
                      validator=valid_seed)
    limit: int | None = field(None, "read at most N texts per source (quick runs, tests)",
                              validator=positive_or_none)
    data_dir: str | None = field(None, "folder of the task files (default: $PLATFORM_DATA_DIR, then "
                                       "../shared/data/cs224n)")
    output_dir: str | None = field(None, "run folder, a checkpoint once done (default runs/<time>-pretrain-<text>); "
                                         "must not exist or be empty")
    save_every: int = field(200, "steps between resume checkpoints (last.pt)", validator=v.ge(1))
    log_every: int = field(20, "steps between logged training figures", validator=v.ge(1))
    threads: int | None = field(None, "torch CPU threads (default: all cores)", validator=positive_or_none)
    device: str = field("auto", "cpu, cuda, cuda:N, or auto")
    precision: str = field("auto", "fp32, bf16 (autocast) or auto (bf16 where the hardware has it natively)",
                           validator=v.in_(("auto", "fp32", "bf16")))
    plugins: tuple[str, ...] = field((), "comma-separated opt-in plugins to enable (for their maskers)",
                                     converter=names)
    components: dict[str, dict[str, Any]] = attrs.field(factory=dict, metadata={"help": "", "cli": False})

    def __attrs_post_init__(self):
        if self.mask_token + self.random_token > 1.0:
            raise ValueError(f"--mask-token {self.mask_token} + --random-token {self.random_token} exceed 1")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def load(cls, path: Path) -> "PretrainConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # json's errors are ValueErrors
            raise ConfigError(f"{path}: not a readable pretraining configuration "
                              f"({getattr(error, 'strerror', None) or error})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a pretraining configuration (a JSON object of settings)")
        unknown = sorted(set(data) - {f.name for f in attrs.fields(cls)})
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {unknown}")
        return build(cls, data, source=str(path))


def finalize(config: PretrainConfig) -> PretrainConfig:
    precision = resolve_precision(config.precision, resolve_device(config.device))
    output_dir = config.output_dir or str(claim_new_name(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-pretrain-"
                                                         f"{'-'.join(Path(t).stem for t in config.text)}"))
    return attrs.evolve(config, precision=precision, output_dir=output_dir)
