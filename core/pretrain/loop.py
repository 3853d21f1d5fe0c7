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
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.base import files as checkpoints
from core.base.devices import autocast
from core.data.tokenizer import Tokenizer
from core.encoder.loading import CheckpointSource
from core.encoder.mlm import MaskedLM, save_checkpoint_folder
from core.pretrain.config import PretrainConfig
from core.pretrain.corpus import Corpus
from core.pretrain.masking import ReplacementRule, Vocabulary, mask_batch
from core.train.sampling import permutation

log = logging.getLogger("platform")

_ORDER = 31  # salt of the per-epoch order of the training sequences






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
