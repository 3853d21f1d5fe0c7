"""A masker for `platform pretrain --masker block`: one contiguous block of tokens per sequence (MASS,
Song et al., 2019), as many as the mask rate asks for."""

import torch

from core.api import Component, budget, hookimpl


class Block:
    static = False  # a new block at every visit of a sequence

    def __init__(self, settings=None):
        self.settings = settings

    def select(self, ids, candidates, word_starts, rate, generator):
        positions = candidates.nonzero().squeeze(1)  # (C,): the tokens that may be predicted
        k = budget(len(positions), rate)
        start = int(torch.randint(0, len(positions) - k + 1, (1,), generator=generator))
        chosen = torch.zeros_like(candidates)
        chosen[positions[start:start + k]] = True
        return chosen


@hookimpl
def platform_maskers():
    return [Component("block", Block, help="one contiguous block of tokens per sequence (MASS)")]
