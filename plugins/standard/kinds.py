"""The built-in task kinds, registered like any third-party kind.

A kind is an input (what the encoder reads and the head sees) combined with an output (labels, head,
loss, predictions, metrics, and the form of the head output it declares: ``class-logits``,
``binary-logit`` or ``score``):

================================  ==============================  =================================
kind                              input                           output
================================  ==============================  =================================
``single-classification``         one sentence, pooled            classes (one logit when binary)
``single-regression``             one sentence, pooled            a score on the label range
``pair-classification``           two sentences encoded apart     classes, SBERT's [u; v; |u − v|]
``pair-regression``               two sentences encoded apart     a score, the cosine of u and v
``cross-pair-classification``     ``[CLS] a [SEP] b [SEP]``       classes
``cross-pair-regression``         ``[CLS] a [SEP] b [SEP]``       a score
================================  ==============================  =================================

``token-tagging`` lives in ``plugins/standard/tagging.py``. Regression heads output the score on the label
range scaled to [0, 1], and losses are computed there, so a 0-5 task and a 0-1 task train at the same
learning rate; predictions are mapped back to the task's range.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.api import (
    Component,
    ConfigError,
    CosineRegressor,
    PairClassifier,
    SentenceClassifier,
    TaskKind,
    TaskSpec,
    Widths,
    hookimpl,
)

Head = Callable[[TaskSpec, Widths, int, float], nn.Module]  # (spec, widths, outputs, dropout) -> head


# --------------------------------------------------------------------------------------------------
# Inputs: what the encoder reads and what the head is called with
# --------------------------------------------------------------------------------------------------


class SentenceInput(TaskKind):
    """One text, encoded as ``[CLS] text [SEP]``; the head reads its pooled embedding."""

    texts = 1

    def classifier(self, spec: TaskSpec, widths: Widths, outputs: int, dropout: float) -> nn.Module:
        return SentenceClassifier(widths.pooled, outputs, dropout)

    regressor = classifier


class CrossPairInput(SentenceInput):
    """Two texts in one sequence, ``[CLS] a [SEP] b [SEP]`` (token types 0, then 1), truncated longest
    first: a cross-encoder, whose attention relates the two texts; the head reads the pooled embedding."""

    texts = 2

    def encode(self, spec, texts, tokenizer, max_length):
        ids, types = tokenizer.encode_pairs([t or "" for t in texts[0]], [t or "" for t in texts[1]], max_length)
        return {"sequences": [ids], "token_types": [types]}


class PairInput(TaskKind):
    """Two texts encoded apart (a bi-encoder, SBERT): the head reads their pooled embeddings u and v."""

    texts = 2
    head_input = "pair"

    def features(self, output, batch, pooled):
        return tuple(pooled.chunk(2))  # u: the first sentences, v: the second

    def classifier(self, spec: TaskSpec, widths: Widths, outputs: int, dropout: float) -> nn.Module:
        return PairClassifier(widths.pooled, outputs, dropout)

    def regressor(self, spec: TaskSpec, widths: Widths, outputs: int, dropout: float) -> nn.Module:
        return CosineRegressor()


# --------------------------------------------------------------------------------------------------
# Outputs: labels, loss, predictions, metrics
# --------------------------------------------------------------------------------------------------


class Classification(TaskKind):
    """Class ids 0 … num_labels − 1 (names in ``spec.labels`` also read); one logit when num_labels is 1
    (binary, BCE), class logits otherwise (cross-entropy)."""

    classifier: Head  # the input's head of ``outputs`` classes (SentenceInput, PairInput)

    metrics = ("accuracy",)

    def parse_label(self, spec, value):
        if isinstance(value, str) and value.strip() in spec.labels:
            return spec.labels.index(value.strip())
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        classes = 2 if spec.num_labels == 1 else spec.num_labels
        return int(number) if number.is_integer() and 0 <= number < classes else None

    def stack_labels(self, spec, labels):
        return torch.tensor(labels, dtype=torch.long)

    def build_head(self, spec, widths, dropout):
        return self.classifier(spec, widths, spec.num_labels, dropout)

    def loss(self, spec, output, labels):
        if spec.num_labels == 1:
            return F.binary_cross_entropy_with_logits(output.view(-1), labels.float())
        return F.cross_entropy(output, labels.long())

    def predict(self, spec, output, batch):
        if spec.num_labels == 1:
            return (output.view(-1) > 0).long()
        return output.argmax(dim=-1)

    def format_prediction(self, spec, prediction):
        return str(int(prediction))

    def output(self, spec):
        return "binary-logit" if spec.num_labels == 1 else "class-logits"


class Regression(TaskKind):
    """A float score in ``spec.label_range``; the head outputs it scaled to [0, 1]; squared error."""

    regressor: Head  # the input's head of one score (SentenceInput, PairInput)

    metrics = ("pearson",)

    def check(self, spec):
        super().check(spec)
        low, high = spec.label_range
        if not low < high:
            raise ConfigError(f"task {spec.name!r}: label_range must be (low, high) with low < high, got {spec.label_range}")

    def parse_label(self, spec, value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        low, high = spec.label_range
        return number if low <= number <= high else None

    def stack_labels(self, spec, labels):
        return torch.tensor(labels, dtype=torch.float64)  # the scores as written; losses take them in float32

    def outputs(self, spec):
        return 1

    def build_head(self, spec, widths, dropout):
        return self.regressor(spec, widths, 1, dropout)

    def loss(self, spec, output, labels):
        low, high = spec.label_range
        return F.mse_loss(output.view(-1), (labels.float() - low) / (high - low))

    def predict(self, spec, output, batch):
        low, high = spec.label_range
        return low + (high - low) * output.view(-1).float()

    def format_prediction(self, spec, prediction):
        return f"{prediction:.4f}"

    def output(self, spec):
        return "score"


# --------------------------------------------------------------------------------------------------
# The kinds
# --------------------------------------------------------------------------------------------------


class SingleClassification(Classification, SentenceInput):
    name, description = "single-classification", "one sentence -> a class (e.g. sentiment)"


class SingleRegression(Regression, SentenceInput):
    name, description = "single-regression", "one sentence -> a score on the label range"


class PairClassification(Classification, PairInput):
    name, description = "pair-classification", "two sentences encoded apart -> a class, from [u; v; |u - v|] (SBERT)"


class PairRegression(Regression, PairInput):
    name, description = "pair-regression", "two sentences encoded apart -> a score, the cosine of u and v (SBERT)"


class CrossPairClassification(Classification, CrossPairInput):
    name, description = "cross-pair-classification", "two sentences as one sequence (cross-encoder) -> a class"


class CrossPairRegression(Regression, CrossPairInput):
    name, description = "cross-pair-regression", "two sentences as one sequence (cross-encoder) -> a score"


BUILT_IN = (SingleClassification, SingleRegression, PairClassification, PairRegression, CrossPairClassification,
            CrossPairRegression)


@hookimpl
def platform_task_kinds() -> list[Component[TaskKind]]:
    return [Component.of(kind()) for kind in BUILT_IN]
