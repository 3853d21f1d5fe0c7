"""Finding the data folder, tokenizing task files once (cached), and batching with dynamic padding.

Task files are read and checked by :mod:`core.taskfiles`; this module turns their texts into token ids
as the task's kind encodes them (cached on disk by the rows' content, kind, vocabulary and length; labels
are parsed afresh every time and never cached), and collates batches through the kind.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Sequence

import attrs
import datasets
import torch

from core.data.batch import Batch
from core.data.folders import cache_dir
from core.data.tables import DataError
from core.tasks.files import read_rows
from core.tasks.task import Task

LIMIT_SEED = 0  # --limit samples the same rows in every run
VALIDATION_SEED = 13  # --validation-split holds out the same rows in every run, whatever --seed
VALIDATION = "validation"  # the split held out of the train file by --validation-split






@attrs.define
class SplitData:
    """One tokenized split of one task, held in memory as token-id lists."""

    task: Task
    split: str
    ids: list[str]
    sequences: list[list[list[int]]]  # per sequence of an example (2 for a bi-encoder pair), per example
    labels: Any  # the kind's stacked labels (a tensor of one label per example), None for a test split
    token_types: list[list[list[int]]] | None = None  # same layout as sequences, where the kind sets them
    extras: dict[str, list] = attrs.Factory(dict)  # per example, what the kind's collate needs
    lengths: list[int] = attrs.field(init=False)  # per example: tokens of its longest sequence

    def __attrs_post_init__(self) -> None:
        self.lengths = [max(sizes) for sizes in zip(*([len(ids) for ids in column] for column in self.sequences))]

    def __len__(self) -> int:
        return len(self.ids)




def make_batch(data: SplitData, indices: Sequence[int], pad) -> Batch:
    """Collate ``indices`` of ``data`` with padding to the longest sequence in the batch."""
    indices = list(indices)
    sequences = [column[i] for column in data.sequences for i in indices]
    types = None if data.token_types is None else [column[i] for column in data.token_types for i in indices]
    padded = pad(sequences, types)
    labels, extras = data.task.kind.collate(data.task.spec, data.labels, data.extras, indices,
                                           padded["input_ids"].shape[1])
    return Batch(data.task.name, padded["input_ids"], padded["token_type_ids"], padded["attention_mask"],
                 labels, [data.ids[i] for i in indices], torch.as_tensor(indices, dtype=torch.long), extras)


def sample(ids: Sequence[str], limit: int | None) -> list[int]:
    """``--limit``: the positions of a seeded random sample of ``limit`` rows, kept in file order (files may
    be sorted by label, as the SST files are, so the first rows could be a single class); all rows without
    one. A row is drawn by a hash of its id and a fixed seed, so every run (and a BAM teacher) with the same
    limit reads the same rows, and editing or deleting a row outside the sample leaves the sample as it was."""
    if limit is None or limit >= len(ids):
        return list(range(len(ids)))
    rank = sorted(range(len(ids)), key=lambda i: hashlib.sha256(f"{LIMIT_SEED}:{ids[i]}".encode()).digest())
    return sorted(rank[:limit])


def held_out(size: int, fraction: float) -> list[int]:
    """``--validation-split``: the rows of a train file of ``size`` rows held out as the validation set,
    in file order. A fixed seed (not ``--seed``), so every run of a comparison, a study's every trial and
    a BAM teacher hold out the same rows; at least one row is held out and at least one is kept."""
    count = min(size - 1, max(1, round(fraction * size)))
    return sorted(random.Random(VALIDATION_SEED).sample(range(size), count))


def split_rows(task: Task, split: str, ids: Sequence[str], limit: int | None, validation_split: float,
               path: Path) -> list[int]:
    """The positions of the rows of a file (of ids ``ids``) that ``split`` reads: with ``validation_split``, the
    ``validation`` split is the held-out part of the train file and ``train`` the rest; then ``--limit``
    samples each (so a limited run validates on a subset of the same held-out rows)."""
    if split == VALIDATION and not validation_split > 0:
        raise DataError(f"task {task.name!r}: no validation split without --validation-split (a fraction of the "
                        "train file to hold out, e.g. 0.1)")
    size = len(ids)
    rows = list(range(size))
    if validation_split > 0 and split in ("train", VALIDATION):
        if size < 2:
            raise DataError(f"{path}: --validation-split {validation_split} needs at least 2 training rows of task "
                            f"{task.name!r} (one to hold out, one to train on), the file has {size}")
        held = held_out(size, validation_split)
        rows = held if split == VALIDATION else sorted(set(rows) - set(held))
    return [rows[i] for i in sample([ids[row] for row in rows], limit)]


def load_split(task: Task, split: str, *, data_dir: Path, tokenizer, max_length: int,
               limit: int | None = None, validation_split: float = 0.0) -> SplitData:
    """Read, check, sample and tokenize one split (``train``, ``dev``, ``test``, or ``validation``: the
    rows of the train file that ``validation_split`` holds out, see :func:`split_rows`); token ids are
    cached on disk."""
    spec = task.spec
    file_split = "train" if split == VALIDATION else split
    if file_split not in spec.files:
        raise DataError(f"task {spec.name!r} has no {split!r} file (it has: {', '.join(spec.files)})")
    path = Path(data_dir) / spec.files[file_split]
    rows = read_rows(task, path, labelled=split != "test", split=file_split)
    rows = rows.select(split_rows(task, split, rows.ids, limit, validation_split, path))
    encoded = encode_cached(task, split, rows.ids, rows.texts, tokenizer, max_length)
    extras = {name: values for name, values in encoded.items() if name not in ("sequences", "token_types")}
    labels = None if rows.labels is None else task.kind.stack_labels(spec, rows.labels)
    return SplitData(task, split, rows.ids, encoded["sequences"], labels, encoded.get("token_types"), extras)


def encode_cached(task: Task, split: str, ids: list[str], texts: list[list[Any]], tokenizer,
                  max_length: int) -> dict[str, Any]:
    """``task.kind.encode`` of the texts, cached on disk under a key of everything that shapes it: the
    rows' ids and texts themselves (their content, not the file's name, size or time: a file edited in
    place, even to the same size within the same second, is encoded afresh), the kind and its version,
    the vocabulary and the length."""
    key = hashlib.sha1(repr((content_digest(ids, texts), task.kind.name, task.kind.version, tokenizer.vocab_sha,
                             max_length)).encode()).hexdigest()[:16]
    columns = [f"text{c}" for c in range(len(texts))]

    def encode(batch: dict) -> dict:
        encoded = task.kind.encode(task.spec, [batch[c] for c in columns], tokenizer, max_length)
        flat: dict[str, Any] = {}
        for name, value in encoded.items():
            per_column = name in ("sequences", "token_types")
            flat.update({f"{name}.{c}": v for c, v in enumerate(value)} if per_column else {name: value})
        return flat

    rows = datasets.Dataset.from_dict(dict(zip(columns, texts)))
    encoded = rows.map(encode, batched=True, batch_size=2000, remove_columns=columns,
                       cache_file_name=str(cache_dir() / "tokens" / f"{task.name}-{split}-{key}.arrow"),
                       load_from_cache_file=True, new_fingerprint=key, desc=f"tokenizing {task.name} {split}")
    names = sorted({name.partition(".")[0] for name in encoded.column_names})
    return {name: [encoded[f"{name}.{c}"] for c in range(_count(encoded.column_names, name))]
            if name in ("sequences", "token_types") else encoded[name] for name in names}


def content_digest(ids: list[str], texts: list[list[Any]]) -> str:
    """A hash of the rows' ids and texts (per text column, per row; strings, or lists of words)."""
    digest = hashlib.sha256()
    for values in (ids, *texts):
        digest.update(json.dumps(values, ensure_ascii=False, default=repr).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _count(columns: list[str], name: str) -> int:
    return sum(1 for column in columns if column.startswith(name + "."))
