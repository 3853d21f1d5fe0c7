"""Masking packed sequences for the masked-language-model objective.

A masker (a component of ``platform_maskers``, ``factory(settings) -> Masker``; built-ins in
``plugins/standard/maskers.py``) chooses *which* positions of a sequence to predict; the host then applies
BERT's replacement rule to them, the same for every masker: of the chosen positions, 80% become
[MASK], 10% a random ordinary token, 10% keep their token (all are predicted). Special tokens are
never candidates.

Every sequence is masked from a generator of its own, seeded from the run's seed and a key: the
position of this visit in the training stream for a dynamic masker (a new mask every time a sequence
is seen), the sequence's index for a static one (``masker.static = True``: the same mask on every
visit). Masks are thus a pure function of (seed, step), and a resumed run needs no masking state.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
import torch
from attrs import validators as v
from torch import Tensor

from core.encoder.mlm import IGNORED

_DYNAMIC, _STATIC, _HELDOUT = 1, 2, 3  # generator salts: the three key spaces never share a seed


class Masker(Protocol):
    static: bool  # True: a sequence's mask depends on the sequence alone, not on the visit

    def select(self, ids: Tensor, candidates: Tensor, word_starts: Tensor, rate: float,
               generator: torch.Generator) -> Tensor:
        """Positions to predict in one sequence: a bool (T,) subset of ``candidates``, about ``rate``
        of them. ``ids``: (T,) token ids; ``word_starts``: (T,) True where a word begins."""


class MaskerFactory(Protocol):
    """What a masker component's factory is: ``factory(settings) -> Masker``."""

    def __call__(self, settings: Any) -> Masker: ...


@attrs.frozen
class ReplacementRule:
    """How many positions are predicted, and what the chosen ones are replaced by."""

    rate: float = attrs.field(default=0.15, validator=[v.gt(0.0), v.lt(1.0)])
    mask: float = attrs.field(default=0.8, validator=[v.ge(0.0), v.le(1.0)])
    random: float = attrs.field(default=0.1, validator=[v.ge(0.0), v.le(1.0)])

    def __attrs_post_init__(self):
        if self.mask + self.random > 1.0:
            raise ValueError(f"mask share {self.mask} + random share {self.random} exceed 1 "
                             "(the rest keep their token)")


class Vocabulary:
    """Per-id lookup tables the maskers need: special tokens, word continuations ("##"), and the ids
    a random replacement draws from (every token but the special and ``[unused…]`` ones)."""

    def __init__(self, tokens: list[str], special_ids: tuple[int, ...], mask_id: int, pad_id: int):
        self.mask_id, self.pad_id = mask_id, pad_id
        self.special = torch.zeros(len(tokens), dtype=torch.bool)  # (V,)
        self.special[list(special_ids)] = True
        self.continuation = torch.tensor([t.startswith("##") for t in tokens])  # (V,)
        ordinary = [i for i, t in enumerate(tokens) if not self.special[i] and not t.startswith("[unused") and t]
        self.replacements = torch.tensor(ordinary, dtype=torch.long)

    @classmethod
    def of(cls, tokenizer) -> "Vocabulary":
        return cls(tokenizer.vocabulary(), tokenizer.special_ids, tokenizer.mask_id, tokenizer.pad_id)

    def word_starts(self, ids: Tensor) -> Tensor:
        """(T,) True where a word begins: a piece without "##", or any piece right after a special
        token (a sentence split mid-word starts its next part with a continuation)."""
        starts = ~self.continuation[ids]
        starts[1:] |= self.special[ids[:-1]]
        starts[0] = True
        return starts


def generator(seed: int, key: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + key * 8 + salt)


def mask_sequence(masker: Masker, ids: Tensor, vocab: Vocabulary, rule: ReplacementRule,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One sequence (T,) -> (inputs (T,), labels (T,)): labels hold the original id at predicted
    positions and ``IGNORED`` elsewhere."""
    candidates = ~vocab.special[ids]
    chosen = masker.select(ids, candidates, vocab.word_starts(ids), rule.rate, generator) & candidates
    labels = torch.where(chosen, ids, IGNORED)
    draw = torch.rand(ids.shape, generator=generator)  # one draw per position decides its replacement
    random_ids = vocab.replacements[torch.randint(len(vocab.replacements), ids.shape, generator=generator)]
    inputs = torch.where(chosen & (draw < rule.mask), vocab.mask_id, ids)
    inputs = torch.where(chosen & (draw >= rule.mask) & (draw < rule.mask + rule.random), random_ids, inputs)
    return inputs, labels


def mask_batch(masker: Masker, sequences: list[list[int]], keys: list[int], indices: list[int], vocab: Vocabulary,
               rule: ReplacementRule, seed: int, heldout: bool = False) -> dict[str, Tensor]:
    """Masked, padded batch of ``sequences``: ``input_ids``, ``attention_mask``, ``labels``, each (B, T).

    ``keys`` are the positions of these visits in the training stream, ``indices`` the sequences'
    indices; the generator of each comes from the visit (dynamic maskers), the index (static
    maskers), or the index in a key space of its own (``heldout``: fixed masks for evaluation)."""
    width = max(map(len, sequences))
    input_ids = torch.full((len(sequences), width), vocab.pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORED, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (sequence, key, index) in enumerate(zip(sequences, keys, indices)):
        if heldout:
            rng = generator(seed, index, _HELDOUT)
        else:
            rng = generator(seed, index, _STATIC) if masker.static else generator(seed, key, _DYNAMIC)
        ids = torch.tensor(sequence, dtype=torch.long)
        inputs, targets = mask_sequence(masker, ids, vocab, rule, rng)
        input_ids[row, :len(ids)], labels[row, :len(ids)], attention_mask[row, :len(ids)] = inputs, targets, 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def budget(candidates: int, rate: float) -> int:
    """Tokens to predict among ``candidates``: ``rate`` of them rounded, at least one (BERT's rule)."""
    return 0 if candidates == 0 else max(1, round(rate * candidates))
