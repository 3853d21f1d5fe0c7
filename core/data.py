"""Finding the data folder, tokenizing task files once (cached), and batching with dynamic padding.

Task files are read and checked by :mod:`core.taskfiles`; this module turns their rows into token ids,
cached on disk by file, vocabulary and length.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import attrs
import torch

from core.taskfiles import DataError, read_rows
from core.tasks import TaskSpec

DATA_ENV = "PLATFORM_DATA_DIR"
CACHE_ENV = "PLATFORM_CACHE_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIRS = (PROJECT_ROOT.parent / "shared" / "data" / "cs224n", Path.cwd().parent / "shared" / "data" / "cs224n")


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The data folder: ``--data-dir``, else ``$PLATFORM_DATA_DIR``, else ``../shared/data/cs224n``."""
    if flag:
        tried = [(f"--data-dir {flag}", Path(flag))]
    elif os.environ.get(DATA_ENV):
        tried = [(f"${DATA_ENV}={os.environ[DATA_ENV]}", Path(os.environ[DATA_ENV]))]
    else:
        tried = [(f"default {path}", path) for path in dict.fromkeys(DEFAULT_DATA_DIRS)]
    for _, path in tried:
        if path.is_dir():
            return path
    looked = "; ".join(label for label, _ in tried)
    raise DataError(f"no data folder found (looked at: {looked}). Pass --data-dir DIR or set ${DATA_ENV}.")


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "platform")
    path.mkdir(parents=True, exist_ok=True)
    return path


@attrs.define
class SplitData:
    """One tokenized split of one task, held in memory as token-id lists."""

    task: TaskSpec
    split: str
    ids: list[str]
    texts: list[list[list[int]]]  # per text column, per example: token ids with [CLS] … [SEP]
    labels: torch.Tensor | None
    lengths: list[int] = attrs.field(init=False)  # per example: tokens of its longest text

    def __attrs_post_init__(self) -> None:
        self.lengths = [max(sizes) for sizes in zip(*([len(ids) for ids in column] for column in self.texts))]

    def __len__(self) -> int:
        return len(self.ids)


@attrs.frozen
class Batch:
    """A padded batch. Pair tasks stack both sentences: rows ``[:n]`` are the first, ``[n:]`` the second."""

    task: str
    input_ids: torch.Tensor  # (texts·B, T)
    token_type_ids: torch.Tensor  # (texts·B, T)
    attention_mask: torch.Tensor  # (texts·B, T)
    labels: torch.Tensor | None  # (B,)
    ids: list[str]
    indices: torch.Tensor  # (B,) positions in the split, for per-example state (teachers, caches)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> "Batch":
        """The batch with its model inputs and labels on ``device``; ``indices`` stay on the CPU, where
        per-example state (teacher outputs, caches) lives."""
        if self.input_ids.device == device:
            return self
        moved = {name: getattr(self, name).to(device, non_blocking=True)
                 for name in ("input_ids", "token_type_ids", "attention_mask")}
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return attrs.evolve(self, labels=labels, **moved)


def make_batch(data: SplitData, indices: Sequence[int], pad) -> Batch:
    """Collate ``indices`` of ``data`` with padding to the longest sequence in the batch."""
    sequences = [column[i] for column in data.texts for i in indices]
    padded = pad(sequences)
    labels = data.labels[list(indices)] if data.labels is not None else None
    return Batch(data.task.name, padded["input_ids"], padded["token_type_ids"], padded["attention_mask"],
                 labels, [data.ids[i] for i in indices], torch.as_tensor(list(indices), dtype=torch.long))


def load_split(task: TaskSpec, split: str, *, data_dir: Path, tokenizer, max_length: int,
               limit: int | None = None) -> SplitData:
    """Read, filter and tokenize one split; tokenization is cached on disk by file, vocab and length."""
    if split not in task.files:
        raise DataError(f"task {task.name!r} has no {split!r} file (it has: {', '.join(task.files)})")
    path = Path(data_dir) / task.files[split]
    rows = read_rows(task, path, labelled=split != "test")
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    stat = path.stat()
    key = hashlib.sha1(repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns, tokenizer.vocab_sha,
                             max_length, limit, task.text_columns, len(rows))).encode()).hexdigest()[:16]
    columns = list(task.text_columns)

    def tokenize(batch: dict) -> dict:
        return {f"tokens_{c}": tokenizer.encode([t or "" for t in batch[c]], max_length) for c in columns}

    tokenized = rows.map(tokenize, batched=True, batch_size=2000, remove_columns=columns,
                         cache_file_name=str(cache_dir() / "tokens" / f"{task.name}-{split}-{key}.arrow"),
                         load_from_cache_file=True, desc=f"tokenizing {task.name} {split}")
    labels = torch.tensor(tokenized["label"]) if "label" in tokenized.column_names else None
    if labels is not None and not task.is_regression:
        labels = labels.long()
    return SplitData(task, split, list(tokenized[task.id_column]),
                     [tokenized[f"tokens_{c}"] for c in columns], labels)
