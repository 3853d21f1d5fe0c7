"""A task kind of one's own: multi-label sentence classification (any number of labels per sentence),
with the metric it is scored by, and SMART's divergence for the head output it declares."""

import torch
import torch.nn.functional as F

from core.api import Component, SentenceClassifier, TaskKind, hookimpl


class MultiLabel(TaskKind):
    name = "multi-label"
    description = "one sentence -> any subset of the labels (comma-separated names in the file)"
    metrics = ("exact_match",)

    def parse_label(self, spec, value):
        names = [name.strip() for name in str(value).split(",") if name.strip()]
        if any(name not in spec.labels for name in names):
            return None  # the row is skipped and counted
        return [float(label in names) for label in spec.labels]

    def output(self, spec):
        return "label-logits"  # (B, labels), one independent logit per label

    def build_head(self, spec, widths, dropout):
        return SentenceClassifier(widths.pooled, spec.num_labels, dropout)  # a logit per label

    def loss(self, spec, output, labels):
        return F.binary_cross_entropy_with_logits(output, labels.float())

    def predict(self, spec, output, batch):
        return (output > 0).long()  # (B, labels)

    def gold(self, spec, labels):
        return labels.long()

    def format_prediction(self, spec, prediction):
        return ",".join(label for label, on in zip(spec.labels, prediction) if on)



def exact_match(predictions, gold):
    """Share of sentences whose whole label set is right."""
    return (predictions == gold).all(dim=-1).float().mean().item()


def per_label_symmetric_kl(a, b, labels):
    """SMART's divergence of two label-logit outputs: the symmetric KL of each label's Bernoulli."""
    return ((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b)).sum(-1).mean()


@hookimpl
def platform_task_kinds():
    return [Component.of(MultiLabel())]


@hookimpl
def platform_metrics():
    return [Component("exact_match", exact_match)]


@hookimpl
def platform_smart_divergences():  # a hook the smart plugin declares; BAM has none for label-logits: it refuses
    return {"label-logits": per_label_symmetric_kl}
