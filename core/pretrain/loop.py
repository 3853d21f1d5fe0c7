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
from core.train.context import Run
from core.train.sampling import permutation

log = logging.getLogger("platform")

_ORDER = 31  # salt of the per-epoch order of the training sequences






@attrs.define(kw_only=True)
class PretrainingRun(Run):
    """The live state of a further-pretraining run, handed to the loop hooks as ``run``."""

    config: PretrainConfig
    model: MaskedLM
    tokenizer: Tokenizer
    vocab: Vocabulary
    masker: Any
    rule: ReplacementRule
    corpus: Corpus
    source: CheckpointSource
    head_from_checkpoint: bool
    train_seconds: float = 0.0
    history: list[dict[str, float]] = attrs.Factory(list)
    _orders: dict[int, list[int]] = attrs.Factory(dict)

    @property
    def total_steps(self) -> int:
        return self.config.steps

    def order(self, epoch: int) -> list[int]:
        """The training sequences' order in ``epoch``: a permutation of (seed, epoch)."""
        if epoch not in self._orders:
            self._orders = {epoch: permutation(len(self.corpus.train), self.config.seed, epoch, _ORDER)}
        return self._orders[epoch]



# --------------------------------------------------------------------------------------------------
# Building a run
# --------------------------------------------------------------------------------------------------








# --------------------------------------------------------------------------------------------------
# Resume state: tensors and plain containers only, so torch.load(weights_only=True) reads it
# --------------------------------------------------------------------------------------------------


def state_of(run: PretrainingRun) -> dict[str, Any]:
    return {"config": run.config.to_dict(), "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "rng": checkpoints.rng_state(), "step": run.global_step,
            "train_seconds": run.train_seconds, "history": run.history}


def load_state(path: Path) -> dict[str, Any]:
    state = checkpoints.load(path)  # weights_only: a crafted file is refused by name
    if "step" not in state:
        raise checkpoints.CheckpointFileError(f"{path} is not a pretraining run checkpoint")
    return state


def restore(run: PretrainingRun, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    if "python" in rng:  # every generator, as a training run keeps them
        checkpoints.set_rng_state(rng)
    else:  # a last.pt of an earlier version: torch's generators only
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    run.global_step, run.train_seconds, run.history = state["step"], state["train_seconds"], state["history"]
    run.examples_seen = run.global_step * run.config.batch_size
    log.info("resumed %s at step %d", run.output_dir, run.global_step)


# --------------------------------------------------------------------------------------------------
# Steps and evaluation
# --------------------------------------------------------------------------------------------------


def training_batch(run: PretrainingRun, step: int) -> dict[str, torch.Tensor]:
    """The masked batch of ``step``: positions step·B … of an endless stream of epochs, each a fresh
    permutation of the training sequences."""
    n, size = len(run.corpus.train), run.config.batch_size
    keys = list(range(step * size, (step + 1) * size))
    indices = [run.order(key // n)[key % n] for key in keys]
    return mask_batch(run.masker, [run.corpus.train[i] for i in indices], keys, indices, run.vocab, run.rule,
                      run.config.seed)


def mlm_loss(run: PretrainingRun, batch: dict[str, torch.Tensor], reduction: str = "mean"):
    """Cross-entropy over the predicted tokens (float32), their count, and how many were right."""
    batch = {key: t.to(run.model.device) for key, t in batch.items()}
    with autocast(run.model.device, run.model.precision):
        logits, labels = run.model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    logits = logits.float()
    loss = F.cross_entropy(logits, labels, reduction=reduction)
    return loss, len(labels), int((logits.argmax(-1) == labels).sum())


def train_step(run: PretrainingRun, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
    """One update; the loss (detached) and the masked-token accuracy of the batch."""
    loss, n, correct = mlm_loss(run, batch)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.pm.hook.platform_on_after_optimizer_step(run=run)
    return loss.detach(), correct / max(n, 1)


@torch.no_grad()
def evaluate_heldout(run: PretrainingRun) -> dict[str, float]:
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
    return {"step": run.global_step, "loss": loss, "perplexity": math.exp(loss), "accuracy": correct / max(tokens, 1),
            "tokens": tokens}


def record_heldout(run: PretrainingRun) -> dict[str, float]:
    """Evaluate on the held-out sequences; the figures go to ``metrics.json`` and to the loop hooks (the
    telemetry plugin writes them as ``heldout/<name>``)."""
    result = evaluate_heldout(run)
    run.history.append(result)
    run.pm.hook.platform_on_evaluate_end(run=run, split="heldout",
                                         metrics={name: result[name] for name in ("loss", "perplexity", "accuracy")})
    log.info("step %d held-out: perplexity %.3f, masked-token accuracy %.4f (%d tokens)", run.global_step,
             result["perplexity"], result["accuracy"], result["tokens"])
    return result


# --------------------------------------------------------------------------------------------------
# The loop and the checkpoint folder
# --------------------------------------------------------------------------------------------------


def train(run: PretrainingRun) -> dict[str, Any]:
    """Train to ``config.steps`` from wherever ``run`` stands; returns the metrics (``metrics.json``). The
    loop hooks fire as in a training run: train start, after every optimizer step and step, every
    ``--log-every`` steps (the loss ``mlm``), after every held-out evaluation (split ``heldout``), train end."""
    config = run.config
    try:
        run.pm.hook.platform_on_train_start(run=run)
        if not run.history:
            record_heldout(run)  # the "before" figure
        run.model.train()
        bar = tqdm(total=config.steps, initial=run.global_step, desc="pretrain", unit="step", dynamic_ncols=True)
        losses: list[torch.Tensor] = []
        accuracies: list[float] = []
        try:
            started = time.perf_counter()
            while run.global_step < config.steps:
                loss, accuracy = train_step(run, training_batch(run, run.global_step))
                run.global_step += 1
                run.examples_seen += config.batch_size
                losses.append(loss)
                accuracies.append(accuracy)
                run.pm.hook.platform_on_after_step(run=run, step=run.global_step, losses={"mlm": loss})
                bar.update(1)
                if run.global_step % config.log_every == 0:
                    mean = float(torch.stack(losses).mean())
                    run.writer.add_scalar("train/masked_accuracy", sum(accuracies) / len(accuracies), run.global_step)
                    run.pm.hook.platform_on_log(run=run, step=run.global_step, losses={"mlm": mean})
                    bar.set_postfix(loss=f"{mean:.3f}", acc=f"{accuracies[-1]:.3f}", refresh=False)
                    losses, accuracies = [], []
                if run.global_step % config.eval_every == 0 and run.global_step < config.steps:
                    record_heldout(run)
                if run.global_step % config.save_every == 0 and run.global_step < config.steps:
                    run.train_seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    run.folder.save("last.pt", state_of(run))
            run.train_seconds += time.perf_counter() - started
        finally:
            bar.close()
        if run.history[-1]["step"] != run.global_step:
            record_heldout(run)  # the "after" figure
        run.folder.save("last.pt", state_of(run))
        write_checkpoint_folder(run)
        metrics = write_metrics(run)
        run.pm.hook.platform_on_train_end(run=run, metrics=metrics["after"])
        return metrics
    finally:
        run.close()


def write_metrics(run: PretrainingRun) -> dict[str, Any]:
    corpus = run.corpus
    metrics = {"before": run.history[0], "after": run.history[-1], "heldout": run.history, "steps": run.global_step,
               "train_seconds": round(run.train_seconds, 1), "head_from_checkpoint": run.head_from_checkpoint,
               "corpus": {"texts": corpus.texts, "train_sequences": len(corpus.train),
                          "heldout_sequences": len(corpus.heldout), "train_tokens": corpus.train_tokens}}
    run.folder.write("metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_checkpoint_folder(run: PretrainingRun) -> None:
    # the checkpoint's dropout, not this run's --dropout (a fine-tuning run sets its own)
    dropout = {"hidden_dropout_prob": run.source.config.hidden_dropout_prob,
               "attention_probs_dropout_prob": run.source.config.attention_probs_dropout_prob}
    save_checkpoint_folder(run.model, run.output_dir, run.tokenizer.vocab_path, run.tokenizer.lowercase, dropout)

