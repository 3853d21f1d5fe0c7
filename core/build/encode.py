"""Zero-shot sentence similarity of a pretrained encoder: cosine of pooled embeddings vs gold scores."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from core.base.errors import ConfigError
from core.build.parts import Parts
from core.data.folders import resolve_data_dir
from core.encoder.loading import load_encoder
from core.encoder.pooling import pool
from core.plugin.manager import make_plugin_manager
from core.tasks.splits import load_split


@torch.inference_mode()
def embed_sentences(encoder, pad, sequences: list[list[int]], pooling: str, batch_size: int,
                    desc: str = "encode") -> torch.Tensor:
    """(N, H) pooled embeddings of tokenized sentences, batched in length order to limit padding."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
    out = torch.empty(len(sequences), encoder.config.hidden_size)
    with tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False) as starts:
        for start in starts:
            indices = order[start:start + batch_size]
            batch = pad([sequences[i] for i in indices])
            output = encoder(batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"])
            out[indices] = pool(output, batch["attention_mask"], pooling)
    return out


def zero_shot_similarity(checkpoint: str, *, task: str = "sts", split: str = "dev", pooling: str = "mean",
                         data_dir: str | None = None, batch_size: int = 128,
                         limit: int | None = None) -> tuple[str, float]:
    """The task's score (its first metric, and its name: Pearson's r for STS) of cos(u, v) against the gold
    scores of a pair task's split."""
    for option, value in (("--batch-size", batch_size), ("--limit", limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be a positive number of {'pairs' if option == '--limit' else 'sentences'}"
                              f", got {value}")
    parts = Parts(plugins=(), checkpoint=checkpoint, pm=make_plugin_manager(enabled=None))
    bound = parts.task(task, "--task")
    if bound.kind.head_input != "pair" or bound.kind.outputs(bound.spec) != 1:
        raise ConfigError(f"--task {task}: zero-shot similarity needs a sentence-pair task with a score "
                          f"(its kind {bound.kind.name} is not one)")
    tokenizer = parts.tokenizer
    data = load_split(bound, split, data_dir=resolve_data_dir(data_dir), tokenizer=tokenizer, max_length=128,
                      limit=limit)
    if data.labels is None:
        raise ConfigError(f"{task} {split} has no labels to correlate with")
    encoder = load_encoder(parts.source).eval()
    first, second = (embed_sentences(encoder, tokenizer.pad, column, pooling, batch_size, desc=f"encode {task} {split}")
                     for column in data.sequences)
    scores = bound.score(torch.nn.functional.cosine_similarity(first, second, dim=-1), data.labels)
    return next(iter(scores.items()))  # the task's score: its first metric
