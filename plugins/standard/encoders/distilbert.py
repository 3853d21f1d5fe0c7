"""DistilBERT (``model_type`` "distilbert"), read top to bottom: building blocks, then the config, then the model.

BERT made shallower by distillation: the same Post-LN layers under other names (``q_lin``/``k_lin``/``v_lin``/
``out_lin``, ``sa_layer_norm``, ``ffn.lin1``/``lin2``, ``output_layer_norm``), no segment embeddings (token
type ids are ignored), no pooler. Its tokenizer is BERT's WordPiece. Checkpoints keep the encoder under
``distilbert.``; the MLM head (``vocab_*``) and classifiers sit beside it.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from core.api import Architecture, Component, EncoderOutput, extended_attention_mask, hookimpl

# -----------------------------------------------------------------------------
# building blocks


class Embeddings(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor) -> Tensor:
        T = input_ids.size(1)
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}; truncate the input")
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:T]  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.q_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_lin = nn.Linear(config.hidden_size, config.hidden_size)
        self.n_head = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, T, H = x.shape
        q = self.q_lin(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_lin(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_lin(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.out_lin(y.transpose(1, 2).reshape(B, T, H))  # (B, T, H)


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.lin2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.activation = F.gelu if config.activation == "gelu" else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.lin2(self.activation(self.lin1(x))))  # (B, T, H)


class TransformerBlock(nn.Module):
    """Post-LN, as BERT's: attention, add, LayerNorm; feed-forward, add, LayerNorm."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.ffn(x) + x)


class Transformer(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))


# -----------------------------------------------------------------------------
# config

# config.json's names -> ours (the names every architecture's config shares)
RENAMED = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
           "hidden_dim": "intermediate_size", "dropout": "hidden_dropout_prob",
           "attention_dropout": "attention_probs_dropout_prob"}
ACTIVATIONS = ("gelu", "relu")


def _positive(default: int) -> Any:
    return attrs.field(default=default, validator=[attrs.validators.instance_of(int), attrs.validators.gt(0)])


def _probability(default: float) -> Any:
    return attrs.field(default=default, converter=float, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])


@attrs.frozen
class DistilBertConfig:
    vocab_size: int = _positive(30522)
    hidden_size: int = _positive(768)
    num_hidden_layers: int = _positive(6)
    num_attention_heads: int = _positive(12)
    intermediate_size: int = _positive(3072)
    max_position_embeddings: int = _positive(512)
    hidden_dropout_prob: float = _probability(0.1)
    attention_probs_dropout_prob: float = _probability(0.1)
    pad_token_id: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)])
    activation: str = attrs.field(default="gelu", validator=attrs.validators.in_(ACTIVATIONS))

    def __attrs_post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"dim {self.hidden_size} is not divisible by n_heads {self.num_attention_heads}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> DistilBertConfig:
        """From a DistilBERT config.json (``dim``, ``n_layers``, ...); keys we do not use are ignored."""
        names = {f.name for f in attrs.fields(cls)}
        values = {RENAMED.get(key, key): value for key, value in d.items()}
        try:
            return cls(**{key: value for key, value in values.items() if key in names})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


# -----------------------------------------------------------------------------
# model


class DistilBertModel(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)

    @property
    def layers(self) -> nn.ModuleList:
        return self.transformer.layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> EncoderOutput:
        x = self.embeddings(input_ids)  # (B, T, H); one segment: token_type_ids are not read
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, x.dtype)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.transformer.layer:
            x = layer(x, mask)
            if hidden_states is not None:
                hidden_states.append(x)
        return EncoderOutput(x, None, None if hidden_states is None else tuple(hidden_states))


DISTILBERT = Architecture(config=DistilBertConfig.from_dict, model=DistilBertModel, prefixes=("distilbert.",),
                          ignored=("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "pre_classifier.",
                                   "classifier.", "qa_outputs."),
                          tokenizer_files=("vocab.txt", "tokenizer.json"), pooler=False)


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("distilbert", DISTILBERT, help="DistilBERT: BERT's Post-LN layers renamed, no segments, no "
                                                     "pooler; WordPiece")]
