"""The ``token-tagging`` task kind: a tag per word (named entities, parts of speech), BIO tags allowed.

A task of this kind reads one text column holding the words of a sentence (a list, or a string split on
whitespace) and a label column holding one tag per word (a list, or a whitespace-separated string);
``spec.labels`` names the tags, in label-id order; a row whose tags are not all in it, or are not one
per word, is skipped. Words are split into word pieces: the first piece of each word carries the word's
tag and the others are ignored (label -100), as in BERT's NER recipe. The head reads every token state;
the loss is the cross-entropy over first pieces; predictions are one tag per word, placed by word index
(words without a piece, cut off by ``--max-length`` or left empty by normalisation like a lone emoji
variation selector, are predicted ``O``); the metrics are entity-level precision, recall and F1
(seqeval, CoNLL rules). The head outputs ``token-logits`` (SMART measures the symmetric KL of the tag
distributions at the first pieces; BAM has no distillation loss for them: teacher outputs differ in
length per example).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.api import Component, ConfigError, TaskKind, TokenClassifier, hookimpl

IGNORE = -100  # label of the pieces that carry no tag: [CLS], [SEP], padding, a word's later pieces
OUTSIDE = "O"


def words_of(value) -> list[str]:
    return value.split() if isinstance(value, str) else [str(word) for word in value]


def first_pieces(word_ids: list[int]) -> list[tuple[int, int]]:
    """(token position, word index) of each word's first piece, from a token -> word alignment
    (-1 for special tokens)."""
    starts, previous = [], -1
    for position, word in enumerate(word_ids):
        if word != -1 and word != previous:
            starts.append((position, word))
        previous = word
    return starts


class TokenTagging(TaskKind):
    name = "token-tagging"
    description = "words -> a tag per word (first word piece labelled), entity-level F1"
    texts = 1
    head_input = "tokens"
    metrics = ("entity_f1", "entity_precision", "entity_recall")

    def check(self, spec):
        super().check(spec)
        if not spec.labels:
            raise ConfigError(f"task {spec.name!r} of kind {self.name} needs its tag names in `labels` "
                              "(e.g. labels=('O', 'B-person', 'I-person'))")
        if spec.num_labels != len(spec.labels):
            raise ConfigError(f"task {spec.name!r}: num_labels {spec.num_labels} differs from its {len(spec.labels)} tags")

    def parse_label(self, spec, value):
        tags = words_of(value)
        if not tags or any(tag not in spec.labels for tag in tags):
            return None
        return [spec.labels.index(tag) for tag in tags]

    def label_fits(self, spec, texts, label):
        return len(label) == len(words_of(texts[0]))  # one tag per word

    def encode(self, spec, texts, tokenizer, max_length):
        words = [words_of(value) for value in texts[0]]
        ids, word_ids = tokenizer.encode_words(words, max_length)
        return {"sequences": [ids], "word_ids": word_ids, "words": [len(sentence) for sentence in words]}

    def stack_labels(self, spec, labels):
        return labels  # per example, a tag id per word

    def collate(self, spec, labels, extras, indices, width):
        tags = None if labels is None else torch.full((len(indices), width), IGNORE, dtype=torch.long)
        word_at = torch.full((len(indices), width), -1, dtype=torch.long)  # at a word's first piece: its index
        for row, i in enumerate(indices):
            for position, word in first_pieces(extras["word_ids"][i]):
                word_at[row, position] = word
                if tags is not None:
                    tags[row, position] = labels[i][word]
        words = torch.tensor([extras["words"][i] for i in indices], dtype=torch.long)
        return tags, {"word_at": word_at, "words": words}

    def features(self, output, batch, pooled):
        return (output.last_hidden_state,)

    def build_head(self, spec, widths, dropout):
        return TokenClassifier(widths.hidden, spec.num_labels, dropout)

    def loss(self, spec, output, labels):
        return F.cross_entropy(output.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def predict(self, spec, output, batch):
        tags = output.argmax(dim=-1).cpu()  # (B, T)
        word_at, words = batch.extras["word_at"].cpu(), batch.extras["words"].tolist()
        outside = OUTSIDE if OUTSIDE in spec.labels else spec.labels[0]
        predictions = []
        for row, count in enumerate(words):
            found = [outside] * count  # words without a piece stay outside
            first = word_at[row] >= 0
            for word, tag in zip(word_at[row][first].tolist(), tags[row][first].tolist()):
                found[word] = spec.labels[tag]
            predictions.append(found)
        return predictions

    def gold(self, spec, labels):
        return [[spec.labels[t] for t in sentence] for sentence in labels]

    def format_prediction(self, spec, prediction):
        return " ".join(prediction)

    def output(self, spec):
        return "token-logits"  # (B, T, tags); positions whose label is -100 carry no tag


@hookimpl
def platform_task_kinds() -> list[Component[TaskKind]]:
    return [Component.of(TokenTagging())]
