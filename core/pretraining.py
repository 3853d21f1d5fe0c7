"""Further pretraining (``platform pretrain``): the masked-language-model objective on in-domain and
task text, before fine-tuning (ULMFiT's second stage; "Don't Stop Pretraining"'s DAPT/TAPT).

A run folder is a checkpoint in the BERT layout once training ends (``config.json``,
``model.safetensors`` with ``bert.*`` and ``cls.predictions.*``, ``vocab.txt``,
``tokenizer_config.json``), so ``platform run --checkpoint FOLDER`` fine-tunes from it; beside those it
holds the run's own ``pretrain.json``, ``metrics.json`` (held-out perplexity at every evaluation),
``last.pt`` (resume) and ``tensorboard/``. The data order and the masks are functions of (seed, step),
so a resumed run continues exactly (``last.pt`` adds model, optimizer, schedule and dropout RNG).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import attrs
import pluggy
import torch
import torch.nn.functional as F
from attrs import validators as v
from tqdm.auto import tqdm

from core import checkpoints
from core.assembly import component_config, lookup
from core.config import build, field, names, positive_or_none
from core.corpus import Corpus, load_corpus
from core.data import resolve_data_dir
from core.devices import autocast, resolve_device, resolve_precision
from core.errors import ConfigError
from core.masking import ReplacementRule, Vocabulary, mask_batch
from core.mlm import MaskedLM, load_masked_lm, save_checkpoint_folder
from core.optim import AdamW, parameter_groups, warmup_linear_decay
from core.plugins import Registries, make_plugin_manager
from core.pretrained import CheckpointSource, resolve_checkpoint
from core.sampling import permutation
from core.tasks import bind
from core.tokenizer import Tokenizer

log = logging.getLogger("platform")

RUN_CONFIG = "pretrain.json"
_ORDER = 31  # salt of the per-epoch order of the training sequences


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
    masker: str = field("dynamic", "which tokens to predict (see `platform plugins`): dynamic, static, whole-word, "
                                   "span, or a plugin's")
    steps: int = field(1000, "optimizer steps", validator=v.ge(1))
    batch_size: int = field(32, "packed sequences per step", validator=v.ge(1))
    max_length: int = field(128, "tokens per packed sequence, [CLS] and [SEP]s included", validator=v.ge(3))
    mask_rate: float = field(0.15, "share of the (non-special) tokens of a sequence to predict",
                             validator=[v.gt(0.0), v.lt(1.0)])
    mask_token: float = field(0.8, "share of the predicted tokens replaced by [MASK]", validator=[v.ge(0.0), v.le(1.0)])
    random_token: float = field(0.1, "share of the predicted tokens replaced by a random token (the rest keep "
                                     "theirs)", validator=[v.ge(0.0), v.le(1.0)])
    lr: float = field(1e-4, "peak learning rate", validator=v.gt(0.0))
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
    seed: int = field(11711, "random seed (head init, data order, masks, dropout)")
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
        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in attrs.fields(cls)})
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {unknown}")
        return build(cls, data, source=str(path))


@attrs.define
class PretrainRun:
    config: PretrainConfig
    output_dir: Path
    model: MaskedLM
    tokenizer: Tokenizer
    vocab: Vocabulary
    masker: Any
    rule: ReplacementRule
    corpus: Corpus
    source: CheckpointSource
    optimizer: torch.optim.Optimizer
    scheduler: Any
    head_from_checkpoint: bool
    step: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = attrs.Factory(list)
    _orders: dict[int, list[int]] = attrs.Factory(dict)
    _writer: Any = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=self.step or None)
        return self._writer

    def order(self, epoch: int) -> list[int]:
        """The training sequences' order in ``epoch``: a permutation of (seed, epoch)."""
        if epoch not in self._orders:
            self._orders = {epoch: permutation(len(self.corpus.train), self.config.seed, epoch, _ORDER)}
        return self._orders[epoch]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


# --------------------------------------------------------------------------------------------------
# Building a run
# --------------------------------------------------------------------------------------------------


def finalize(config: PretrainConfig) -> PretrainConfig:
    precision = resolve_precision(config.precision, resolve_device(config.device))
    output_dir = config.output_dir or str(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-pretrain-"
                                          f"{'-'.join(Path(t).stem for t in config.text)}")
    return attrs.evolve(config, precision=precision, output_dir=output_dir)


def check_output_dir(output_dir: Path, resume: bool) -> None:
    """A new run needs a missing or empty folder; ``--resume`` needs a pretraining run's folder."""
    if resume:
        if not (output_dir / RUN_CONFIG).is_file():
            raise ConfigError(f"--resume: {output_dir} holds no pretraining run ({RUN_CONFIG} missing)")
        return
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        own = (output_dir / RUN_CONFIG).is_file()
        hint = "pass --resume to continue it" if own else "it is not a pretraining run's"
        raise ConfigError(f"--output-dir {output_dir} exists and is not empty ({hint}); choose a new folder "
                          "(nothing was overwritten)")


def prepare(config: PretrainConfig, pm: pluggy.PluginManager | None = None, *, resume: bool = False) -> PretrainRun:
    """Build a run from ``config``; with ``resume``, the run in ``config.output_dir``, from its ``last.pt``."""
    if config.output_dir is None and resume:
        raise ConfigError("--resume needs the run folder")
    if resume:
        check_output_dir(Path(config.output_dir), resume=True)
        # the folder as named now, wherever the run was started (folders get moved)
        config = attrs.evolve(PretrainConfig.load(Path(config.output_dir) / RUN_CONFIG), output_dir=config.output_dir)
    config = finalize(config)
    output_dir = Path(config.output_dir)
    if not resume:
        check_output_dir(output_dir, resume=False)
    if config.threads:
        torch.set_num_threads(config.threads)
    registries = Registries(pm or make_plugin_manager(enabled=config.plugins))
    entry = lookup(registries.maskers, config.masker, "--masker")
    masker = entry.value(component_config(config, entry))
    rule = build(ReplacementRule, {"rate": config.mask_rate, "mask": config.mask_token,
                                   "random": config.random_token}, source="--mask-rate/--mask-token/--random-token")
    source = resolve_checkpoint(config.checkpoint)
    if config.max_length > source.config.max_position_embeddings:
        raise ConfigError(f"--max-length {config.max_length} exceeds the checkpoint's max_position_embeddings "
                          f"{source.config.max_position_embeddings}")
    tokenizer = Tokenizer(source.vocab, lowercase=source.lowercase)
    tasks = {e.name: bind(e.value, registries.task_kinds, registries.metrics) for e in registries.tasks}
    data_dir = resolve_data_dir(config.data_dir) if any(t in tasks for t in config.text) else None
    corpus = load_corpus(config.text, tasks, data_dir, tokenizer, config.max_length, config.heldout_every,
                         config.limit)
    torch.manual_seed(config.seed)
    model, from_checkpoint = load_masked_lm(source, dropout=config.dropout, seed=config.seed)
    model = model.to(resolve_device(config.device))
    model.precision = config.precision
    if config.head_only:
        model.bert.requires_grad_(False)
    optimizer = AdamW(parameter_groups(model, config.lr, 1.0, config.weight_decay), lr=config.lr,
                      weight_decay=config.weight_decay)
    warmup_steps = int(config.warmup * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if config.warmup == 0 else warmup_linear_decay(step, warmup_steps, config.steps))
    run = PretrainRun(config, output_dir, model, tokenizer, Vocabulary.of(tokenizer), masker, rule, corpus, source,
                      optimizer, scheduler, from_checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if resume and (output_dir / "last.pt").exists():
        restore(run, load_state(output_dir / "last.pt"))
    return run


# --------------------------------------------------------------------------------------------------
# Resume state: tensors and plain containers only, so torch.load(weights_only=True) reads it
# --------------------------------------------------------------------------------------------------


def state_of(run: PretrainRun) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"config": run.config.to_dict(), "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "rng": rng, "step": run.step,
            "train_seconds": run.train_seconds, "history": run.history}


def load_state(path: Path) -> dict[str, Any]:
    state = checkpoints.load(path)  # weights_only: a crafted file is refused by name
    if "step" not in state:
        raise checkpoints.CheckpointFileError(f"{path} is not a pretraining run checkpoint")
    return state


def restore(run: PretrainRun, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    run.step, run.train_seconds, run.history = state["step"], state["train_seconds"], state["history"]
    log.info("resumed %s at step %d", run.output_dir, run.step)


# --------------------------------------------------------------------------------------------------
# Steps and evaluation
# --------------------------------------------------------------------------------------------------


def training_batch(run: PretrainRun, step: int) -> dict[str, torch.Tensor]:
    """The masked batch of ``step``: positions step·B … of an endless stream of epochs, each a fresh
    permutation of the training sequences."""
    n, size = len(run.corpus.train), run.config.batch_size
    keys = list(range(step * size, (step + 1) * size))
    indices = [run.order(key // n)[key % n] for key in keys]
    return mask_batch(run.masker, [run.corpus.train[i] for i in indices], keys, indices, run.vocab, run.rule,
                      run.config.seed)


def mlm_loss(run: PretrainRun, batch: dict[str, torch.Tensor], reduction: str = "mean"):
    """Cross-entropy over the predicted tokens (float32), their count, and how many were right."""
    batch = {key: t.to(run.model.device) for key, t in batch.items()}
    with autocast(run.model.device, run.model.precision):
        logits, labels = run.model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    logits = logits.float()
    loss = F.cross_entropy(logits, labels, reduction=reduction)
    return loss, len(labels), int((logits.argmax(-1) == labels).sum())


def train_step(run: PretrainRun, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
    loss, n, correct = mlm_loss(run, batch)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.item(), correct / max(n, 1)


@torch.no_grad()
def evaluate_heldout(run: PretrainRun) -> dict[str, float]:
    """MLM loss, perplexity (exp of the mean loss per predicted token) and masked-token accuracy on the
    held-out sequences, masked by the run's masker with masks fixed per sequence (the same at every
    evaluation, so figures at different steps compare)."""
    was_training = run.model.training
    run.model.eval()
    heldout, size = run.corpus.heldout, run.config.eval_batch_size
    total, tokens, correct = 0.0, 0, 0
    for start in range(0, len(heldout), size):
        indices = list(range(start, min(start + size, len(heldout))))
        batch = mask_batch(run.masker, [heldout[i] for i in indices], indices, indices, run.vocab, run.rule,
                           run.config.seed, heldout=True)
        loss, n, right = mlm_loss(run, batch, reduction="sum")
        total, tokens, correct = total + loss.item(), tokens + n, correct + right
    run.model.train(was_training)
    loss = total / max(tokens, 1)
    return {"step": run.step, "loss": loss, "perplexity": math.exp(loss), "accuracy": correct / max(tokens, 1),
            "tokens": tokens}


def record_heldout(run: PretrainRun) -> dict[str, float]:
    result = evaluate_heldout(run)
    run.history.append(result)
    for name in ("loss", "perplexity", "accuracy"):
        run.writer.add_scalar(f"heldout/{name}", result[name], run.step)
    run.writer.flush()
    log.info("step %d held-out: perplexity %.3f, masked-token accuracy %.4f (%d tokens)", run.step,
             result["perplexity"], result["accuracy"], result["tokens"])
    return result


# --------------------------------------------------------------------------------------------------
# The loop and the checkpoint folder
# --------------------------------------------------------------------------------------------------


def train(run: PretrainRun) -> dict[str, Any]:
    """Train to ``config.steps`` from wherever ``run`` stands; returns the metrics (``metrics.json``)."""
    config = run.config
    if not run.history:
        record_heldout(run)  # the "before" figure
    run.model.train()
    bar = tqdm(total=config.steps, initial=run.step, desc="pretrain", unit="step", dynamic_ncols=True)
    sums = [0.0, 0.0, 0]  # loss, accuracy, steps since the last log
    try:
        started = time.perf_counter()
        while run.step < config.steps:
            loss, accuracy = train_step(run, training_batch(run, run.step))
            run.step += 1
            sums = [sums[0] + loss, sums[1] + accuracy, sums[2] + 1]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", refresh=False)
            if run.step % config.log_every == 0:
                run.writer.add_scalar("train/mlm_loss", sums[0] / sums[2], run.step)
                run.writer.add_scalar("train/masked_accuracy", sums[1] / sums[2], run.step)
                run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], run.step)
                sums = [0.0, 0.0, 0]
            if run.step % config.eval_every == 0 and run.step < config.steps:
                record_heldout(run)
            if run.step % config.save_every == 0 and run.step < config.steps:
                run.train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                checkpoints.save(run.output_dir / "last.pt", state_of(run))
        run.train_seconds += time.perf_counter() - started
    finally:
        bar.close()
    if run.history[-1]["step"] != run.step:
        record_heldout(run)  # the "after" figure
    checkpoints.save(run.output_dir / "last.pt", state_of(run))
    write_checkpoint_folder(run)
    metrics = write_metrics(run)
    run.close()
    return metrics


def write_metrics(run: PretrainRun) -> dict[str, Any]:
    corpus = run.corpus
    metrics = {"before": run.history[0], "after": run.history[-1], "heldout": run.history, "steps": run.step,
               "train_seconds": round(run.train_seconds, 1), "head_from_checkpoint": run.head_from_checkpoint,
               "corpus": {"texts": corpus.texts, "train_sequences": len(corpus.train),
                          "heldout_sequences": len(corpus.heldout), "train_tokens": corpus.train_tokens}}
    _write_atomic(run.output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_checkpoint_folder(run: PretrainRun) -> None:
    # the checkpoint's dropout, not this run's --dropout (a fine-tuning run sets its own)
    dropout = {"hidden_dropout_prob": run.source.config.hidden_dropout_prob,
               "attention_probs_dropout_prob": run.source.config.attention_probs_dropout_prob}
    save_checkpoint_folder(run.model, run.output_dir, run.tokenizer.vocab_path, run.tokenizer.lowercase, dropout)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
