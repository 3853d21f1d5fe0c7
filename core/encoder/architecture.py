"""What an encoder architecture is: the contract of the ``encoders`` component family (hook
``platform_encoders``), and what every encoder returns.

An :class:`Architecture` says how to read a checkpoint folder of one Hugging Face ``model_type``: its
config (``config.json`` -> a config object), the model that config builds, how the checkpoint's weight
names map onto the model's (prefixes such as ``roberta.`` stripped, heads left out: the model's own
names mirror the checkpoint, so the rest is a plain mapping), and its tokenizer (which files, which
special tokens). BERT is core's own (``core.encoder.bert``, the masked-language model and the presets
build on it); the others are plugins (``plugins/standard/encoders/``). ``core.build`` picks the one whose
``model_type`` a checkpoint's ``config.json`` names.

Every model returns an :class:`EncoderOutput`, which pooling, the heads and the training loop read, and
has what the rest of the platform uses (:class:`Encoder`): its ``config``, its ``embeddings`` (the module
whose output the layers read: SMART perturbs it), and its ``layers`` (layer-wise learning rates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

import attrs
import torch
from torch import Tensor, nn

from core.data.tokenizer import BERT_SPECIALS, SpecialTokens, Tokenizer

# the tokenizer files an architecture may read, each with what it is
TOKENIZER_FILES = {"vocab.txt": "a WordPiece vocabulary", "vocab.json": "a byte-level BPE vocabulary (with merges.txt)",
                   "tokenizer.json": "a tokenizers pipeline"}


class EncoderOutput(NamedTuple):
    last_hidden_state: Tensor  # (B, T, H)
    pooler_output: Tensor | None  # (B, H); None for an architecture without a pooler
    # num_layers + 1 of (B, T, H): the embedding output, then each layer's
    hidden_states: tuple[Tensor, ...] | None = None


class EncoderConfig(Protocol):
    """The fields of an architecture's config that the platform reads (and the two dropouts it sets)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    max_position_embeddings: int
    pad_token_id: int
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float


class Encoder(Protocol):
    """What the platform needs of an encoder model (an ``nn.Module``)."""

    @property
    def config(self) -> Any:
        """An :class:`EncoderConfig`."""
        ...

    @property
    def embeddings(self) -> nn.Module:
        """The module whose output (B, T, E) the first layer reads: SMART perturbs it."""
        ...

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers, lowest first (layer-wise learning rates)."""
        ...

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                 output_hidden_states: bool = False) -> EncoderOutput: ...

    def parameters(self, recurse: bool = True) -> Any: ...


def _tokenizer_files(value: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in value if name not in TOKENIZER_FILES]
    if not value or unknown:
        raise ValueError(f"tokenizer_files {value!r}: give one or more of {', '.join(TOKENIZER_FILES)}")
    return tuple(value)


@attrs.frozen
class Architecture:
    """An encoder architecture, as a plugin's ``platform_encoders`` registers it: ``Component(name, Architecture(
    ...))``, ``name`` being what ``model_type`` in a checkpoint's ``config.json`` says."""

    # config.json's dict and where it was read -> the config (raises ValueError naming the file and field)
    config: Callable[[dict[str, Any], str], Any]
    model: Callable[[Any], nn.Module]  # config -> the model, random-initialised
    # checkpoint prefixes stripped from weight names ("roberta."): task heads' checkpoints wrap the encoder
    prefixes: tuple[str, ...] = ()
    # weight names (after stripping) that are not the encoder's: heads, position-id buffers
    ignored: tuple[str, ...] = ()
    # model tensors a checkpoint may lack (a masked-language model's leaves out the pooler): initialised at
    # random, as transformers does; linear layers only
    optional: tuple[str, ...] = ()
    specials: SpecialTokens = BERT_SPECIALS
    # the tokenizer files it reads, in order of preference: the first one the folder has is used
    tokenizer_files: tuple[str, ...] = attrs.field(default=("vocab.txt",), converter=_tokenizer_files)
    pooler: bool = True  # whether pooler_output is computed (the "pooler" pooling needs it)

    def encoder_weights(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's tensors under the model's names: prefixes stripped, what is not the encoder's left out."""
        mapped = {}
        for key, tensor in state.items():
            for prefix in self.prefixes:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    break
            if not key.startswith(self.ignored):
                mapped[key] = tensor
        return mapped

    def tokenizer_file(self, folder: Path) -> Path | None:
        """The tokenizer file of ``folder`` this architecture reads, None when it has none of them."""
        return next((folder / name for name in self.tokenizer_files if (folder / name).is_file()), None)

    def tokenizer(self, path: Path, lowercase: bool) -> Tokenizer:
        """The tokenizer of the file :meth:`tokenizer_file` found (``lowercase`` for a WordPiece vocabulary)."""
        if path.name == "vocab.json":
            return Tokenizer.byte_level_bpe(path, path.parent / "merges.txt", self.specials)
        if path.name == "tokenizer.json":
            return Tokenizer.from_file(path, self.specials)
        return Tokenizer(path, lowercase=lowercase, specials=self.specials)


def meta_tensors(model: nn.Module) -> list[str]:
    """Names of ``model``'s tensors still on the meta device after loading: buffers that neither the
    checkpoint nor the model's init filled."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, tensor in named if tensor.device == torch.device("meta")]
