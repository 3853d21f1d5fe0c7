"""DeBERTa-v2 and -v3 (``model_type`` "deberta-v2"), read top to bottom: building blocks, config, model.

BERT's Post-LN layers with disentangled attention: beside content-to-content scores ``q·k``, each head
scores content-to-position (``c2p``: the query against the key's relative position) and position-to-content
(``p2c``: the key against the query's), from one table of relative position embeddings shared by the layers
(``encoder.rel_embeddings``, LayerNorm'ed with ``norm_rel_ebd``), optionally in log buckets beyond
``position_buckets / 2``; each of the three terms is divided by sqrt(head size x number of terms). v3 has no
absolute positions (``position_biased_input`` false) and shares the content projections with the positions
(``share_att_key``); v2-xlarge adds a convolution beside the first layer (``conv_kernel_size``). Embeddings
are zeroed at padding; there is no pooler. The tokenizer is the checkpoint's ``tokenizer.json`` (transformers
writes one from ``spm.model``). Checkpoints keep the encoder under ``deberta.``, beside ``lm_head.``/``cls.``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.api import Architecture, Component, EncoderOutput, extended_attention_mask, hookimpl

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh}

# -----------------------------------------------------------------------------
# building blocks


def log_bucket(relative: Tensor, buckets: int, max_position: int) -> Tensor:
    """Offsets within ``buckets / 2`` unchanged, longer ones on a log scale up to ``max_position`` (sign kept)."""
    sign = torch.sign(relative)
    mid = buckets // 2
    near = (relative < mid) & (relative > -mid)
    distance = torch.where(near, torch.tensor(mid - 1).type_as(relative), relative.abs())
    far = torch.ceil(torch.log(distance / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(distance <= mid, relative.type_as(far), far * sign).long()


def relative_positions(T: int, buckets: int, max_position: int, device: torch.device) -> Tensor:
    """(T, T) query-minus-key offsets, bucketed when ``buckets`` > 0."""
    ids = torch.arange(T, device=device)
    relative = ids[:, None] - ids[None, :]  # (T, T)
    return log_bucket(relative, buckets, max_position) if buckets > 0 else relative


class Embeddings(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        E = config.embedding_size or config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        if config.position_biased_input:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        if config.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        if E != config.hidden_size:
            self.embed_proj = nn.Linear(E, config.hidden_size, bias=False)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, mask: Tensor) -> Tensor:
        T = input_ids.size(1)
        x = self.word_embeddings(input_ids)  # (B, T, E)
        if hasattr(self, "position_embeddings"):
            if T > self.position_embeddings.num_embeddings:
                raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                                 f"{self.position_embeddings.num_embeddings}; truncate the input")
            x = x + self.position_embeddings.weight[:T]
        if hasattr(self, "token_type_embeddings"):
            x = x + (self.token_type_embeddings.weight[0] if token_type_ids is None
                     else self.token_type_embeddings(token_type_ids))
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)  # (B, T, H)
        x = self.LayerNorm(x) * mask[:, :, None].to(x.dtype)  # padding zeroed
        return self.dropout(x)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        H = config.hidden_size
        self.query_proj = nn.Linear(H, H)
        self.key_proj = nn.Linear(H, H)
        self.value_proj = nn.Linear(H, H)
        self.terms = config.pos_att_type
        self.relative = config.relative_attention
        if self.relative and not config.share_att_key:
            if "c2p" in self.terms:
                self.pos_key_proj = nn.Linear(H, H)
            if "p2c" in self.terms:
                self.pos_query_proj = nn.Linear(H, H)
        self.share_att_key = config.share_att_key
        self.span = config.attention_span
        self.n_head = config.num_attention_heads
        self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.dropout = config.attention_probs_dropout_prob

    def heads(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:-1], self.n_head, -1).transpose(-3, -2)  # (..., nh, T, hs)

    def forward(self, x: Tensor, mask: Tensor, relative: Tensor, rel_embeddings: Tensor | None) -> Tensor:
        B, T, H = x.shape
        q, k, v = self.heads(self.query_proj(x)), self.heads(self.key_proj(x)), self.heads(self.value_proj(x))
        # each score term (content, and each positional one) is divided by sqrt(hs x number of terms)
        scale = math.sqrt(q.size(-1) * (1 + len(self.terms)))
        bias = mask  # (B, 1, 1, T) padding
        if self.relative and rel_embeddings is not None:
            bias = bias + self.position_scores(q, k, relative, self.pos_dropout(rel_embeddings)) / scale
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / scale,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)

    def position_scores(self, q: Tensor, k: Tensor, relative: Tensor, rel_embeddings: Tensor) -> Tensor:
        """(B, nh, T, T) content-to-position plus position-to-content scores, undivided."""
        rel = rel_embeddings[: 2 * self.span]  # (2·span, H): offsets -span..span-1
        index = torch.clamp(relative + self.span, 0, 2 * self.span - 1)  # (T, T): query i, key j -> row of i - j
        B, nh, T, _ = q.shape
        score = torch.zeros(B, nh, T, T, dtype=q.dtype, device=q.device)
        if "c2p" in self.terms:
            pos_key = self.heads(self.key_proj(rel) if self.share_att_key else self.pos_key_proj(rel))  # (nh, 2s, hs)
            c2p = q @ pos_key.transpose(-1, -2)  # (B, nh, T, 2·span)
            score = score + torch.gather(c2p, -1, index.expand(B, nh, T, T))  # query i against offset i - j
        if "p2c" in self.terms:
            pos_query = self.heads(self.query_proj(rel) if self.share_att_key else self.pos_query_proj(rel))
            p2c = k @ pos_query.transpose(-1, -2)  # (B, nh, T, 2·span), rows are keys
            reverse = torch.clamp(-relative + self.span, 0, 2 * self.span - 1)  # key j, query i -> row of i - j
            score = score + torch.gather(p2c, -1, reverse.expand(B, nh, T, T)).transpose(-1, -2)
        return score


class AddNorm(nn.Module):
    """Project, add the sublayer's input, LayerNorm (Post-LN): ``attention.output`` and ``output``."""

    def __init__(self, d_in: int, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(d_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)  # (B, T, H)


class Attention(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = AddNorm(config.hidden_size, config)

    def forward(self, x: Tensor, mask: Tensor, relative: Tensor, rel_embeddings: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask, relative, rel_embeddings), x)


class Intermediate(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.dense(x))  # (B, T, I)


class Layer(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AddNorm(config.intermediate_size, config)

    def forward(self, x: Tensor, mask: Tensor, relative: Tensor, rel_embeddings: Tensor | None) -> Tensor:
        x = self.attention(x, mask, relative, rel_embeddings)
        return self.output(self.intermediate(x), x)


class ConvLayer(nn.Module):
    """v2-xlarge's convolution over the embeddings, added to the first layer's output."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        size = config.conv_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, size, padding=(size - 1) // 2,
                              groups=config.conv_groups)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.activation = ACTIVATIONS[config.conv_act]

    def forward(self, embedded: Tensor, residual: Tensor, mask: Tensor) -> Tensor:
        keep = mask[:, :, None].to(embedded.dtype)  # (B, T, 1)
        out = self.conv(embedded.transpose(1, 2)).transpose(1, 2) * keep  # (B, T, H), padding zeroed
        return self.LayerNorm(residual + self.activation(self.dropout(out))) * keep


class Encoder(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        if config.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * config.attention_span, config.hidden_size)
            if "layer_norm" in config.norm_rel_ebd:
                self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.conv_kernel_size > 0:
            self.conv = ConvLayer(config)
        self.buckets, self.max_relative = config.position_buckets, config.max_relative

    def forward(self, x: Tensor, attention_mask: Tensor, output_hidden_states: bool):
        mask = extended_attention_mask(attention_mask, x.dtype)  # (B, 1, 1, T)
        relative = relative_positions(x.size(1), self.buckets, self.max_relative, x.device)  # (T, T)
        rel_embeddings = None
        if hasattr(self, "rel_embeddings"):
            rel_embeddings = self.rel_embeddings.weight  # (2·span, H)
            if hasattr(self, "LayerNorm"):
                rel_embeddings = self.LayerNorm(rel_embeddings)
        embedded = x
        hidden_states = [x] if output_hidden_states else None
        for index, layer in enumerate(self.layer):
            x = layer(x, mask, relative, rel_embeddings)
            if index == 0 and hasattr(self, "conv"):
                x = self.conv(embedded, x, attention_mask)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, None if hidden_states is None else tuple(hidden_states)


# -----------------------------------------------------------------------------
# config


def _terms(value: Any) -> tuple[str, ...]:
    """``pos_att_type``: "p2c|c2p" or a list; None: none."""
    if value is None:
        return ()
    terms = tuple(t.strip().lower() for t in (value.split("|") if isinstance(value, str) else value))
    if unknown := [t for t in terms if t not in ("c2p", "p2c")]:
        raise ValueError(f"pos_att_type {value!r}: {unknown} are not c2p or p2c")
    return terms


def _norm(value: Any) -> tuple[str, ...]:
    """``norm_rel_ebd``: "layer_norm", "none", or a tuple of them (what attrs.evolve passes back)."""
    return tuple(t.strip().lower() for t in (value.split("|") if isinstance(value, str) else value))


def _int(default: int) -> Any:
    return attrs.field(default=default, validator=attrs.validators.instance_of(int))


def _probability(default: float) -> Any:
    return attrs.field(default=default, converter=float, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])


@attrs.frozen
class DebertaV2Config:
    vocab_size: int = _int(128100)
    hidden_size: int = _int(768)
    num_hidden_layers: int = _int(12)
    num_attention_heads: int = _int(12)
    intermediate_size: int = _int(3072)
    hidden_act: str = attrs.field(default="gelu", validator=attrs.validators.in_(tuple(ACTIVATIONS)))
    hidden_dropout_prob: float = _probability(0.1)
    attention_probs_dropout_prob: float = _probability(0.1)
    max_position_embeddings: int = _int(512)
    type_vocab_size: int = _int(0)
    layer_norm_eps: float = attrs.field(default=1e-7, converter=float)
    relative_attention: bool = attrs.field(default=False, converter=bool)
    max_relative_positions: int = _int(-1)
    position_buckets: int = _int(-1)
    pad_token_id: int = _int(0)
    position_biased_input: bool = attrs.field(default=True, converter=bool)
    pos_att_type: tuple[str, ...] = attrs.field(default=(), converter=_terms)
    share_att_key: bool = attrs.field(default=False, converter=bool)
    norm_rel_ebd: tuple[str, ...] = attrs.field(default=("none",), converter=_norm)
    embedding_size: int | None = attrs.field(default=None)
    conv_kernel_size: int = _int(0)
    conv_groups: int = _int(1)
    conv_act: str = attrs.field(default="tanh", validator=attrs.validators.in_(tuple(ACTIVATIONS)))
    attention_head_size: int | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads}")
        heads = self.hidden_size // self.num_attention_heads
        if self.attention_head_size not in (None, heads):
            raise ValueError(f"attention_head_size {self.attention_head_size} is not supported: heads here are "
                             f"hidden_size / num_attention_heads = {heads} wide")

    @property
    def max_relative(self) -> int:
        """The furthest offset the relative positions tell apart."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def attention_span(self) -> int:
        """Offsets -span..span-1 have a row of ``rel_embeddings`` each."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> DebertaV2Config:
        """From a DeBERTa-v2 config.json; keys we do not use are ignored."""
        names = {f.name for f in attrs.fields(cls)}
        try:
            return cls(**{key: value for key, value in d.items() if key in names})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


# -----------------------------------------------------------------------------
# model


class DebertaV2Model(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> EncoderOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, attention_mask)  # (B, T, H)
        x, hidden_states = self.encoder(x, attention_mask, output_hidden_states)
        return EncoderOutput(x, None, hidden_states)


DEBERTA_V2 = Architecture(config=DebertaV2Config.from_dict, model=DebertaV2Model, prefixes=("deberta.",),
                          ignored=("embeddings.position_ids", "lm_head.", "cls.", "pooler.", "classifier.",
                                   "mask_predictions.", "qa_outputs."),
                          tokenizer_files=("tokenizer.json",), pooler=False)


@hookimpl
def platform_encoders() -> list[Component[Architecture]]:
    return [Component("deberta-v2", DEBERTA_V2, help="DeBERTa-v2/v3: disentangled attention over relative "
                                                     "positions, no pooler; tokenizer.json")]
