"""The BERT encoder, read top to bottom: building blocks, then the config, then the model.

Module attributes reproduce the Hugging Face `BertModel` state-dict keys (without the "bert."
prefix), so a pretrained checkpoint loads as a plain mapping (core/pretrained.py). The architecture
is the original one: learned absolute positions, Post-LN layers (add, then LayerNorm), exact GELU
feed-forward, tanh pooler over [CLS]. Attention goes through `F.scaled_dot_product_attention`,
which picks a fused kernel where one applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.encoder.architecture import Architecture, EncoderOutput

# -----------------------------------------------------------------------------
# building blocks


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        T = input_ids.size(1)
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}; truncate the input")
        x = self.word_embeddings(input_ids)  # (B, T, H), a fresh tensor, so adding in place is safe
        # every row uses positions 0..T-1: slice the table instead of a per-token lookup
        x += self.position_embeddings.weight[:T]  # (T, H) broadcast over B
        if token_type_ids is None:
            x += self.token_type_embeddings.weight[0]  # no segments given: all are segment 0
        else:
            x += self.token_type_embeddings(token_type_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    # separate query/key/value projections keep the checkpoint's names; a fused qkv Linear would
    # need its weights split or concatenated at every load/save boundary
    def __init__(self, config: BertConfig):
        super().__init__()
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.n_head = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, T, H = x.shape
        # views, not copies: SDPA accepts the transposed strides
        q = self.query(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)


class AddNorm(nn.Module):
    """Project a sublayer's output, add the sublayer's input, then LayerNorm (Post-LN).

    The checkpoint calls this `attention.output` after attention and `output` after the
    feed-forward; both hold `dense` and `LayerNorm`.
    """

    def __init__(self, d_in: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))  # (B, T, H)


class Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)  # "self" is the checkpoint's name for the q/k/v block
        self.output = AddNorm(config.hidden_size, config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        # exact (erf) GELU: BERT checkpoints were trained with it, the tanh approximation drifts
        return F.gelu(self.dense(x))  # (B, T, I)


class Layer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AddNorm(config.intermediate_size, config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, mask: Tensor | None, output_hidden_states: bool):
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layer:
            x = layer(x, mask)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, None if hidden_states is None else tuple(hidden_states)


class Pooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # (B, H), from the [CLS] position


def extended_attention_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, T) mask of 1 (token) / 0 (padding) -> (B, 1, 1, T) additive mask for SDPA.

    Broadcast over heads and query positions: padded keys get the most negative finite value
    rather than -inf, so a row with no real tokens softmaxes to uniform instead of NaN.
    """
    keep = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (1.0 - keep) * torch.finfo(dtype).min


# -----------------------------------------------------------------------------
# config


def _positive_int(default: int, help: str):
    return attrs.field(default=default, validator=[attrs.validators.instance_of(int), attrs.validators.gt(0)],
                       metadata={"help": help})


def _probability(default: float, help: str):
    return attrs.field(default=default, converter=float,
                       validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)], metadata={"help": help})


# values other than these change the architecture, which this file does not implement
_REQUIRED = {"hidden_act": "gelu", "position_embedding_type": "absolute"}


@attrs.frozen
class BertConfig:
    vocab_size: int = _positive_int(30522, "rows of the word-embedding table")
    hidden_size: int = _positive_int(768, "width of every layer")
    num_hidden_layers: int = _positive_int(12, "number of transformer layers")
    num_attention_heads: int = _positive_int(12, "attention heads per layer")
    intermediate_size: int = _positive_int(3072, "width of the feed-forward inner layer")
    max_position_embeddings: int = _positive_int(512, "longest sequence the model accepts")
    type_vocab_size: int = _positive_int(2, "number of segment (token type) ids")
    hidden_dropout_prob: float = _probability(0.1, "dropout on embeddings and sublayer outputs")
    attention_probs_dropout_prob: float = _probability(0.1, "dropout on attention weights")
    layer_norm_eps: float = attrs.field(default=1e-12, converter=float, validator=attrs.validators.gt(0.0),
                                        metadata={"help": "epsilon inside every LayerNorm"})
    pad_token_id: int = attrs.field(
        default=0, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)],
        metadata={"help": "id of [PAD]; its embedding row starts at zero and gets no gradient"})

    def __attrs_post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary "
                             f"(vocab_size {self.vocab_size})")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> BertConfig:
        """Build from a Hugging Face config.json dict; keys we do not use are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        for key, wanted in _REQUIRED.items():
            if d.get(key, wanted) != wanted:
                raise ValueError(f"{source}: {key}={d[key]!r} is not supported; this encoder implements "
                                 f"{key}={wanted!r} only")
        names = {f.name for f in attrs.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_json_file(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read config {path}: {err}") from err
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# -----------------------------------------------------------------------------
# model


INIT_STD = 0.02  # BERT's initializer_range


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        self.init_weights()

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """BERT's random init; pass a seeded generator to reproduce it without touching global RNG."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, INIT_STD, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def encode(self, embedding_output: Tensor, attention_mask: Tensor | None = None,
               output_hidden_states: bool = False) -> EncoderOutput:
        # built once here, shared by every layer
        mask = None
        if attention_mask is not None:
            mask = extended_attention_mask(attention_mask, embedding_output.dtype)
        x, hidden_states = self.encoder(embedding_output, mask, output_hidden_states)
        return EncoderOutput(x, self.pooler(x), hidden_states)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> EncoderOutput:
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        return self.encode(x, attention_mask, output_hidden_states)


# the architecture of model_type "bert" (registered by plugins/standard/encoders/bert.py); pretraining heads and
# task heads sit beside the encoder in Hugging Face checkpoints, under "bert."
BERT = Architecture(config=BertConfig.from_dict, model=BertModel, prefixes=("bert.",),
                    ignored=("embeddings.position_ids", "cls.", "classifier.", "qa_outputs."))
