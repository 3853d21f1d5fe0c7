"""Built-in maskers for ``platform pretrain``: which positions of a sequence the MLM predicts.

- ``dynamic`` (default): tokens drawn afresh on every visit of a sequence (RoBERTa).
- ``static``: the same draw, but one mask per sequence for the whole run (the original BERT's
  pre-masked data, one duplicate), for comparison.
- ``whole-word``: whole words (all WordPieces of a word together) until the budget is reached.
- ``span``: spans of whole words whose lengths follow a clipped geometric distribution (SpanBERT:
  p = 0.2, at most 10 words, mean 3.8 words).

Each predicts ``budget(candidates, rate)`` tokens (15% by default; whole-word and span stop at the
last unit that fits, so they can fall a little short); the host applies 80/10/10 to them
(``core.masking``).
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor

from core.api import Component, MaskerFactory, budget, field, hookimpl


class Tokens:
    """Tokens chosen uniformly among the candidates."""

    static = False

    def __init__(self, config=None):
        self.config = config

    def select(self, ids: Tensor, candidates: Tensor, word_starts: Tensor, rate: float,
               generator: torch.Generator) -> Tensor:
        positions = candidates.nonzero().squeeze(1)  # (C,)
        k = budget(len(positions), rate)
        chosen = torch.zeros_like(candidates)
        chosen[positions[torch.randperm(len(positions), generator=generator)[:k]]] = True
        return chosen


class StaticTokens(Tokens):
    """Tokens chosen uniformly among the candidates, once per sequence for the whole run."""

    static = True


def candidate_words(candidates: Tensor, word_starts: Tensor) -> tuple[list[list[int]], list[int]]:
    """The words made of candidate tokens, each a list of positions, in order; and the segment of each
    (how many special tokens precede it), so spans do not cross a [SEP]."""
    words: list[list[int]] = []
    segments: list[int] = []
    segment = 0
    for position, (candidate, start) in enumerate(zip(candidates.tolist(), word_starts.tolist())):
        if not candidate:
            segment += 1
            continue
        if start or not words or segments[-1] != segment:
            words.append([])
            segments.append(segment)
        words[-1].append(position)
    return words, segments


class WholeWords:
    """Whole words (every WordPiece of a chosen word), in random order while they fit the budget."""

    static = False

    def __init__(self, config=None):
        self.config = config

    def select(self, ids: Tensor, candidates: Tensor, word_starts: Tensor, rate: float,
               generator: torch.Generator) -> Tensor:
        words, _ = candidate_words(candidates, word_starts)
        k = budget(int(candidates.sum()), rate)
        chosen = torch.zeros_like(candidates)
        taken = 0
        for w in torch.randperm(len(words), generator=generator).tolist():
            if taken + len(words[w]) > k:  # BERT's rule: skip a word that overflows, try the next
                continue
            chosen[words[w]] = True
            taken += len(words[w])
            if taken == k:
                break
        return chosen


@attrs.frozen
class SpanConfig:
    p: float = field(0.2, "parameter of the geometric distribution of span lengths (in words)",
                     validator=[v.gt(0.0), v.le(1.0)])
    max_words: int = field(10, "longest span, in words: lengths are drawn from the geometric distribution "
                               "clipped to 1..max_words (renormalised)", validator=v.ge(1))
    tries: int = field(100, "span draws per sequence before giving up on filling the budget", validator=v.ge(1))


def span_length_probabilities(p: float, max_words: int) -> Tensor:
    """P(length = 1..max_words): p (1 - p)^(length - 1), renormalised over the clipped range."""
    lengths = torch.arange(1, max_words + 1, dtype=torch.float64)
    probs = p * (1.0 - p) ** (lengths - 1)
    return probs / probs.sum()


class Spans:
    """Spans of whole words, lengths from a clipped geometric distribution, starts uniform over words."""

    static = False

    def __init__(self, config=None):
        self.config = config or SpanConfig()
        self.probabilities = span_length_probabilities(self.config.p, self.config.max_words)

    def select(self, ids: Tensor, candidates: Tensor, word_starts: Tensor, rate: float,
               generator: torch.Generator) -> Tensor:
        words, segments = candidate_words(candidates, word_starts)
        k = budget(int(candidates.sum()), rate)
        chosen = torch.zeros_like(candidates)
        if not words:
            return chosen
        tries = self.config.tries
        lengths = (torch.multinomial(self.probabilities, tries, replacement=True, generator=generator) + 1).tolist()
        starts = torch.randint(len(words), (tries,), generator=generator).tolist()
        taken = 0
        for length, start in zip(lengths, starts):
            end = start
            while end + 1 < min(start + length, len(words)) and segments[end + 1] == segments[start]:
                end += 1  # the span ends at its length, the last word, or its segment's end
            positions = [p for word in words[start:end + 1] for p in word]
            if taken + len(positions) > k or chosen[positions].any():
                continue  # over the budget, or overlapping a span already chosen: draw again
            chosen[positions] = True
            taken += len(positions)
            if taken == k:
                break
        return chosen


@hookimpl
def platform_maskers() -> list[Component[MaskerFactory]]:
    return [
        Component("dynamic", Tokens, default=True,
                  help="tokens drawn uniformly, a new draw every time a sequence is seen (RoBERTa)"),
        Component("static", StaticTokens,
                  help="tokens drawn uniformly, one draw per sequence for the whole run (original BERT)"),
        Component("whole-word", WholeWords, help="whole words: all WordPieces of a chosen word together"),
        Component("span", Spans, settings=SpanConfig,
                  help="spans of whole words, lengths from a clipped geometric distribution (SpanBERT)"),
    ]
