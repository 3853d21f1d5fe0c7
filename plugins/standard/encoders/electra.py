"""ELECTRA's discriminator (``model_type`` "electra"): BERT's layers under BERT's names, with embeddings that may
be narrower than the layers.

The embeddings are BERT's at ``embedding_size`` wide; where that differs from ``hidden_size`` a linear
``embeddings_project`` widens them before the first layer (SMART perturbs the embeddings before it). There
is no pooler. The tokenizer is BERT's WordPiece. Checkpoints keep the encoder under ``electra.``; the
discriminator's ``discriminator_predictions`` and a generator's ``generator_*`` heads sit beside it.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from core.api import Architecture, BertConfig, BertLayers, Component, EncoderOutput, extended_attention_mask, hookimpl

# -----------------------------------------------------------------------------
# building blocks


class Embeddings(nn.Module):
    """BERT's embeddings at ``embedding_size``: words, absolute positions and segments, summed, LayerNorm."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        T = input_ids.size(1)
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}; truncate the input")
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:T]  # (B, T, E)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # no segments given: all are segment 0
        else:
            x = x + self.token_type_embeddings(token_type_ids)  # (B, T, E)
        return self.dropout(self.LayerNorm(x))


# -----------------------------------------------------------------------------
# config


@attrs.frozen
class ElectraConfig(BertConfig):
    embedding_size: int = attrs.field(default=128, validator=[attrs.validators.instance_of(int),
                                                              attrs.validators.gt(0)],
                                      metadata={"help": "width of the embeddings, before embeddings_project"})


# -----------------------------------------------------------------------------
# model


class ElectraModel(nn.Module):
    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = BertLayers(config)  # encoder.layer.N: BERT's Post-LN layers

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> EncoderOutput:
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, H)
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, x.dtype)
        x, hidden_states = self.encoder(x, mask, output_hidden_states)
        return EncoderOutput(x, None, hidden_states)


ELECTRA = Architecture(config=ElectraConfig.from_dict, model=ElectraModel, prefixes=("electra.",),
                       ignored=("embeddings.position_ids", "discriminator_predictions.", "generator_predictions.",
                                "generator_lm_head.", "classifier.", "qa_outputs."),
                       tokenizer_files=("vocab.txt", "tokenizer.json"), pooler=False)


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("electra", ELECTRA, help="ELECTRA discriminator: BERT's layers, embeddings projected to their "
                                               "width, no pooler; WordPiece")]
