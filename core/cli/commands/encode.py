"""``platform encode``: zero-shot cosine similarity of a pretrained encoder on a sentence-pair task."""

from __future__ import annotations

import attrs
from attrs import validators as v

from core.base.settings import field
from core.build.encode import zero_shot_similarity
from core.plugin.command import Command
from core.plugin.component import Component
from core.plugin.invocation import Invocation

POOLINGS = ("cls", "mean")


@attrs.frozen
class EncodeSettings:
    checkpoint: str = field("minilm-l6", "pretrained encoder: a folder, minilm-l6, a hub id, or a preset")
    task: str = field("sts", "a sentence-pair task with a score")
    split: str = field("dev", "split")
    pooling: str = field("mean", "pooling", validator=v.in_(POOLINGS), metadata={"choices": POOLINGS})
    batch_size: int = field(128, "sentences per forward")  # checked by zero_shot_similarity, naming its unit
    limit: int | None = field(None, "at most N pairs", metadata={"metavar": "N", "default": "all"})
    data_dir: str | None = field(None, "folder of the task files", metadata={"metavar": "DIR"})


def encode_command(settings: EncodeSettings, invocation: Invocation) -> int:
    metric, score = zero_shot_similarity(settings.checkpoint, task=settings.task, split=settings.split,
                                         pooling=settings.pooling, data_dir=settings.data_dir,
                                         batch_size=settings.batch_size, limit=settings.limit)
    print(f"{settings.checkpoint} zero-shot cosine {metric} on {settings.task} {settings.split} "
          f"({settings.pooling} pooling): {score:.4f}")
    return 0


COMMAND = Component("encode", Command(encode_command), settings=EncodeSettings,
                    help="zero-shot cosine similarity of a pretrained encoder on a pair task")
