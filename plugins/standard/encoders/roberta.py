"""RoBERTa (``model_type`` "roberta"): BERT's layers and pooler under BERT's names, with its own embeddings.

What differs from BERT is the input side: positions are counted from the padding id on, skipping padding
(a sequence's first token sits at position ``pad_token_id + 1``, padding at ``pad_token_id``), there is one
segment, and the tokenizer is GPT-2's byte-level BPE (``vocab.json`` + ``merges.txt``) with ``<s> a </s></s>
b </s>`` pairs. Checkpoints keep the encoder under ``roberta.``; ``lm_head.`` and ``classifier.`` are heads.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from core.api import ROBERTA_SPECIALS, Architecture, BertConfig, BertModel, Component, hookimpl

# -----------------------------------------------------------------------------
# building blocks


def position_ids(input_ids: Tensor, padding_idx: int) -> Tensor:
    """(B, T) positions padding_idx+1, padding_idx+2, ... of real tokens; padding_idx at padding."""
    real = input_ids.ne(padding_idx).long()  # (B, T)
    return torch.cumsum(real, dim=1) * real + padding_idx


class Embeddings(nn.Module):
    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_tokens = config.max_tokens

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        T = input_ids.size(1)
        if T > self.max_tokens:
            raise ValueError(f"sequence length {T} exceeds the {self.max_tokens} positions of this RoBERTa; "
                             "truncate the input")
        x = self.word_embeddings(input_ids)  # (B, T, H)
        x = x + self.position_embeddings(position_ids(input_ids, self.padding_idx))  # (B, T, H)
        if token_type_ids is None or self.token_type_embeddings.num_embeddings == 1:
            x = x + self.token_type_embeddings.weight[0]  # one segment: every token is in it
        else:
            x = x + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


# -----------------------------------------------------------------------------
# config


@attrs.frozen
class RobertaConfig(BertConfig):
    """BERT's config, read from a RoBERTa ``config.json`` (which says ``pad_token_id`` 1, ``type_vocab_size`` 1,
    ``max_position_embeddings`` 514: the padding id and the positions before it take two rows)."""

    @property
    def max_tokens(self) -> int:
        return self.max_position_embeddings - self.pad_token_id - 1


# -----------------------------------------------------------------------------
# model


class RobertaModel(BertModel):
    """BERT with RoBERTa's embeddings: ``embeddings``, ``encoder.layer.N``, ``pooler`` as in the checkpoint."""

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)  # type: ignore[assignment]  # RoBERTa's own positions
        self.init_weights()


ROBERTA = Architecture(config=RobertaConfig.from_dict, model=RobertaModel, prefixes=("roberta.",),
                       ignored=("embeddings.position_ids", "lm_head.", "classifier.", "qa_outputs."),
                       optional=("pooler.",),
                       specials=ROBERTA_SPECIALS, tokenizer_files=("vocab.json", "tokenizer.json"))


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("roberta", ROBERTA, help="RoBERTa: BERT's layers, positions after the padding id, one "
                                               "segment; byte-level BPE")]
