"""What a task kind is: everything about a task that depends on the shape of its examples and outputs.

A kind plugin registers instances of :class:`TaskKind` subclasses (``platform_register_task_kinds``);
a task names its kind, and the run binds them (``core.tasks.bind``). The host never asks which kind a
task is: it calls the methods below, in this order of a task's life:

- data: :meth:`check` the spec, :meth:`parse_label` each row and check it :meth:`label_fits` the row's
  texts, :meth:`encode` the texts to token ids,
  :meth:`stack_labels` of a split, :meth:`collate` a batch;
- model: :attr:`head_input` says what the head is called with, :meth:`features` makes it from the
  encoder output, :meth:`outputs` and :meth:`build_head` make the default head;
- objective: :meth:`output` (the form of the head output: a name that methods acting on head outputs
  look up, such as SMART's divergences and BAM's distillation losses), :meth:`loss`, :meth:`predict`
  (per example), :meth:`gold` (what metrics compare with), :attr:`metrics` (default metric names, the
  first is the task's score), :meth:`format_prediction`.

A kind carries nothing for a particular plugin: a plugin that acts on head outputs keeps a table by
output name, which a kind with a new output extends through a hook of that plugin's.

The built-in kinds live in ``plugins/standard/kinds.py`` and ``plugins/standard/tagging.py`` and are
registered exactly like a third-party one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from core.base.errors import ConfigError

if TYPE_CHECKING:
    import torch.nn as nn

    from core.data.batch import Batch
    from core.data.tokenizer import Tokenizer
    from core.encoder.bert import EncoderOutput
    from core.tasks.heads import Widths
    from core.tasks.spec import TaskSpec

HEAD_INPUTS = ("sentence", "pair", "tokens")


class TaskKind:
    """Base class of task kinds: subclasses set the class attributes and override what differs."""

    name: str = ""
    description: str = ""
    texts: int = 1  # text columns a task of this kind reads
    head_input: str = "sentence"  # "sentence": head(pooled (B, W)); "pair": head(u, v); "tokens": head(hidden (B, T, H))
    metrics: tuple[str, ...] = ("accuracy",)  # default metric names; the first is the task's score
    version: str = "1"  # part of the tokenization cache key: bump when encode() changes its output

    # ----------------------------------------------------------------------------------------------
    # Data
    # ----------------------------------------------------------------------------------------------

    def check(self, spec: "TaskSpec") -> None:
        """Refuse a spec this kind cannot serve (text columns, label space), naming the task."""
        if len(spec.text_columns) != self.texts:
            raise ConfigError(f"task {spec.name!r} of kind {self.name} needs {self.texts} text column(s), "
                              f"got {list(spec.text_columns)}")

    def parse_label(self, spec: "TaskSpec", value: Any) -> Any:
        """A row's label from the value of its label column, or None to skip the row."""
        raise NotImplementedError

    def label_fits(self, spec: "TaskSpec", texts: list[Any], label: Any) -> bool:
        """Whether a parsed label fits the text fields of its row (token tagging: one tag per word); a
        row whose label does not is skipped like one whose label does not parse."""
        return True

    def encode(self, spec: "TaskSpec", texts: list[list[Any]], tokenizer: "Tokenizer",
               max_length: int) -> dict[str, list]:
        """Token ids of a split's text columns (``texts[c][i]``: column c of example i): a dict with
        ``sequences`` (per sequence column, per example: ids with [CLS] … [SEP]), optionally
        ``token_types`` (same layout) and per-example lists of the kind's own (``extras``)."""
        return {"sequences": [tokenizer.encode([t or "" for t in column], max_length) for column in texts]}

    def stack_labels(self, spec: "TaskSpec", labels: list[Any]) -> Any:
        """How a split keeps its parsed labels (a tensor for one label per example)."""
        return torch.tensor(labels)

    def collate(self, spec: "TaskSpec", labels: Any, extras: dict[str, list], indices: list[int],
                width: int) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """The labels (None for an unlabelled split) and extra tensors of the examples ``indices`` of a
        split, padded to ``width`` tokens; ``labels`` are the split's stacked labels (None when unlabelled),
        ``extras`` the per-example lists :meth:`encode` returned beside the sequences."""
        return (None if labels is None else labels[indices]), {}

    # ----------------------------------------------------------------------------------------------
    # Model
    # ----------------------------------------------------------------------------------------------

    def features(self, output: "EncoderOutput", batch: "Batch",
                 pooled: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        """What the head is called with, from the encoder output and the pooled embeddings of every
        sequence of the batch (``pooled`` is None for ``head_input == "tokens"``)."""
        return (pooled,)

    def outputs(self, spec: "TaskSpec") -> int:
        """Width of the head output (per example, or per token)."""
        return spec.num_labels

    def build_head(self, spec: "TaskSpec", widths: "Widths", dropout: float) -> "nn.Module":
        """The default head of a task, reading ``widths.pooled``-wide embeddings (``widths.hidden`` for tokens)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------
    # Objective
    # ----------------------------------------------------------------------------------------------

    def output(self, spec: "TaskSpec") -> str:
        """The form of the head output: ``class-logits`` (B, C), ``binary-logit`` (B, 1), ``score`` (B, 1)
        on [0, 1], ``token-logits`` (B, T, C) (positions labelled -100 carry no tag), or a name of the
        kind's own (then SMART and BAM need an entry for it from their hooks)."""
        raise NotImplementedError(f"task kind {self.name!r} does not say what its head outputs (output())")

    def loss(self, spec: "TaskSpec", output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a head output (float32) against gold labels, a mean over examples."""
        raise NotImplementedError

    def predict(self, spec: "TaskSpec", output: torch.Tensor, batch: "Batch") -> torch.Tensor | list:
        """Predictions in the task's label space, one per example of ``batch``: a (B, ...) tensor, or a list."""
        raise NotImplementedError

    def gold(self, spec: "TaskSpec", labels: Any) -> Any:
        """What the metrics compare predictions with, from a split's stacked labels."""
        return labels

    def format_prediction(self, spec: "TaskSpec", prediction: Any) -> str:
        """One prediction as the prediction file writes it after ``id , ``."""
        return str(prediction)

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"
