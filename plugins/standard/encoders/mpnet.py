"""MPNet (``model_type`` "mpnet"), read top to bottom: building blocks, then the config, then the model.

BERT's Post-LN layers with one addition: every attention score gets a learned bias per head and relative
position bucket (T5's buckets: exact for near tokens, logarithmic up to 128 apart, the direction kept),
shared by all layers (``encoder.relative_attention_bias``). Absolute positions are counted from the padding
id on, as RoBERTa's; there are no segments (token type ids are ignored). The tokenizer is WordPiece with
``<s>``/``</s>``/``<pad>``/``<mask>`` and ``[UNK]``, pairs joined as ``<s> a </s></s> b </s>``.
Checkpoints keep the encoder under ``mpnet.``, beside ``lm_head.``; sentence-transformers models (such
as all-mpnet-base-v2) keep it bare.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.api import (Architecture, BertConfig, BertPooler, Component, EncoderOutput, SpecialTokens,
                      extended_attention_mask, hookimpl)

NUM_BUCKETS = 32  # relative position buckets; transformers computes 32 whatever the config says
MAX_DISTANCE = 128  # tokens further apart share the last bucket of their direction

# -----------------------------------------------------------------------------
# building blocks


def position_ids(input_ids: Tensor, padding_idx: int) -> Tensor:
    """(B, T) positions padding_idx+1, padding_idx+2, ... of real tokens; padding_idx at padding."""
    real = input_ids.ne(padding_idx).long()  # (B, T)
    return torch.cumsum(real, dim=1) * real + padding_idx


def relative_position_bucket(relative_position: Tensor) -> Tensor:
    """Bucket of each key-minus-query offset: half the buckets per direction, the first half of those one per
    offset, the rest logarithmically wider up to ``MAX_DISTANCE``."""
    half = NUM_BUCKETS // 2
    n = -relative_position
    bucket = (n < 0).long() * half  # keys after the query use the upper half
    n = n.abs()
    exact = half // 2
    scaled = exact + (torch.log(n.float() / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)).long()
    return bucket + torch.where(n < exact, n, scaled.clamp(max=half - 1))


class Embeddings(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_tokens = config.max_tokens

    def forward(self, input_ids: Tensor) -> Tensor:
        T = input_ids.size(1)
        if T > self.max_tokens:
            raise ValueError(f"sequence length {T} exceeds the {self.max_tokens} positions of this MPNet; "
                             "truncate the input")
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids(input_ids, self.padding_idx))
        return self.dropout(self.LayerNorm(x))  # (B, T, H)


class SelfAttention(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.k = nn.Linear(config.hidden_size, config.hidden_size)
        self.v = nn.Linear(config.hidden_size, config.hidden_size)
        self.o = nn.Linear(config.hidden_size, config.hidden_size)
        self.n_head = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        B, T, H = x.shape
        q = self.q(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        # bias: relative positions plus padding, added to the scores before the softmax
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.o(y.transpose(1, 2).reshape(B, T, H))  # (B, T, H)


class Attention(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.attn = SelfAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.attn(x, bias)) + x)  # (B, T, H)


class Intermediate(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # (B, T, I), exact GELU


class Output(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)  # (B, T, H)


class Layer(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = Output(config)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(NUM_BUCKETS, config.num_attention_heads)

    def position_bias(self, T: int, device: torch.device) -> Tensor:
        """(1, nh, T, T) learned bias of every query-key pair's relative position (of the unpadded offsets)."""
        positions = torch.arange(T, device=device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None])  # (T, T): key - query
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, nh, T, T)

    def forward(self, x: Tensor, mask: Tensor | None, output_hidden_states: bool):
        bias = self.position_bias(x.size(1), x.device).to(x.dtype)  # shared by every layer
        if mask is not None:
            bias = bias + mask  # (B, nh, T, T)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layer:
            x = layer(x, bias)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, None if hidden_states is None else tuple(hidden_states)


# -----------------------------------------------------------------------------
# config


@attrs.frozen
class MPNetConfig(BertConfig):
    """BERT's config, read from an MPNet ``config.json`` (``pad_token_id`` 1, ``max_position_embeddings`` 514:
    the padding id and the positions before it take two rows)."""

    relative_attention_num_buckets: int = attrs.field(default=NUM_BUCKETS,
                                                      validator=attrs.validators.in_((NUM_BUCKETS,)),
                                                      metadata={"help": "relative position buckets (32)"})

    @property
    def max_tokens(self) -> int:
        return self.max_position_embeddings - self.pad_token_id - 1


# -----------------------------------------------------------------------------
# model


class MPNetModel(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = BertPooler(config)  # tanh over the first token, as BERT's

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> EncoderOutput:
        x = self.embeddings(input_ids)  # (B, T, H); no segments: token_type_ids are not read
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, x.dtype)
        x, hidden_states = self.encoder(x, mask, output_hidden_states)
        return EncoderOutput(x, self.pooler(x), hidden_states)


MPNET_SPECIALS = SpecialTokens(pad="<pad>", unk="[UNK]", cls="<s>", sep="</s>", mask="<mask>", double_separator=True)
MPNET = Architecture(config=MPNetConfig.from_dict, model=MPNetModel, prefixes=("mpnet.",),
                     ignored=("embeddings.position_ids", "lm_head.", "classifier."), optional=("pooler.",),
                     specials=MPNET_SPECIALS,
                     tokenizer_files=("vocab.txt", "tokenizer.json"))


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("mpnet", MPNET, help="MPNet: BERT's layers with relative position buckets, positions after the "
                                           "padding id, no segments; WordPiece")]
