"""Text for further pretraining: task training texts and plain-text files, packed into sequences.

Sources come from ``--text``: a registered task's name means the text columns of its *train* file
(never dev or test: their texts are what the fine-tuned model is scored on), row by row (both
sentences of a pair, in order); anything else must be a UTF-8 text file, one text per non-empty line.
Texts are tokenized into WordPieces and packed greedily, in order, into sequences of at most
``max_length`` tokens: ``[CLS] text [SEP] text [SEP] … [SEP]``, all of segment 0, a text that does not
fit starting the next sequence, a text longer than a whole sequence split across several. Packing
is deterministic (the order of ``--text``, then of the files); the held-out slice is every
``heldout_every``-th sequence (the last of each block of that many), so it samples every source.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from core.base.errors import ConfigError
from core.data.tables import DataError
from core.tasks.files import read_rows
from core.tasks.splits import sample
from core.tasks.task import Task


@attrs.frozen
class Corpus:
    train: list[list[int]]  # packed sequences, token ids with [CLS] … [SEP]
    heldout: list[list[int]]
    texts: dict[str, int]  # texts read per source

    @property
    def train_tokens(self) -> int:
        return sum(map(len, self.train))


def read_texts(entry: str, tasks: dict[str, Task], data_dir: Path | None, limit: int | None) -> list[str]:
    """The texts of one ``--text`` entry: a task's train split (``--limit``: its seeded sample of rows),
    or the lines of a text file."""
    if entry in tasks:
        task = tasks[entry]
        if data_dir is None:
            raise DataError(f"--text {entry}: the task's files need a data folder")
        rows = read_rows(task, Path(data_dir) / task.spec.files["train"], labelled=False)
        rows = rows.select(sample(rows.ids, limit))
        return [_text(value) for example in zip(*rows.texts) for value in example]
    path = Path(entry).expanduser()
    if not path.is_file():
        raise ConfigError(f"--text: {entry!r} is neither a task ({', '.join(sorted(tasks))}) nor a text file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"--text {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataError(f"--text {path}: cannot read the file ({error.strerror or error})") from None
    texts = [line.strip() for line in lines if line.strip()]
    return texts[:limit] if limit is not None else texts


def _text(value: str | list[str] | None) -> str:
    """A text column's value as text: words (a tagging task's) joined by spaces."""
    return " ".join(value) if isinstance(value, list) else (value or "").strip()


def pack(pieces: list[list[int]], max_length: int, cls_id: int, sep_id: int) -> list[list[int]]:
    """Greedy packing of tokenized texts, in order, into ``[CLS] a [SEP] b [SEP] …`` of <= max_length."""
    if max_length < 3:
        raise ConfigError(f"--max-length must be at least 3 ([CLS], a token, [SEP]), got {max_length}")
    sequences: list[list[int]] = []
    current = [cls_id]
    for text in pieces:
        while text:
            room = max_length - len(current) - 1  # tokens that fit before the closing [SEP]
            if len(text) <= room:
                current += text + [sep_id]
                text = []
            elif len(current) > 1:  # a fresh sequence may hold it: close this one
                sequences.append(current)
                current = [cls_id]
            else:  # longer than a whole sequence: split it
                sequences.append(current + text[:room] + [sep_id])
                text = text[room:]
    if len(current) > 1:
        sequences.append(current)
    return sequences


def split_heldout(sequences: list[list[int]], every: int) -> tuple[list[list[int]], list[list[int]]]:
    """(train, held out): sequence i is held out when ``(i + 1) % every == 0``."""
    train = [s for i, s in enumerate(sequences) if (i + 1) % every]
    heldout = [s for i, s in enumerate(sequences) if not (i + 1) % every]
    return train, heldout


def load_corpus(entries: tuple[str, ...], tasks: dict[str, Task], data_dir: Path | None, tokenizer,
                max_length: int, heldout_every: int, limit: int | None = None) -> Corpus:
    texts = {entry: read_texts(entry, tasks, data_dir, limit) for entry in entries}
    sequences = pack([ids for entry in entries for ids in tokenizer.encode_pieces(texts[entry])], max_length,
                     tokenizer.cls_id, tokenizer.sep_id)
    train, heldout = split_heldout(sequences, heldout_every)
    if not heldout or not train:
        raise ConfigError(f"--heldout-every {heldout_every}: the text of --text {','.join(entries)} packs into "
                          f"{len(sequences)} sequence(s) of --max-length {max_length}, which leaves "
                          f"{'nothing held out' if not heldout else 'nothing to train on'}; "
                          f"use a value between 2 and {max(2, len(sequences))}")
    return Corpus(train, heldout, {entry: len(found) for entry, found in texts.items()})
