"""The masked-language-model head, and the encoder with it (the Hugging Face ``BertForMaskedLM`` layout).

The head is BERT's: a transform (dense, exact GELU, LayerNorm), then a decoder onto the vocabulary
whose weight *is* the word-embedding table (tied: one tensor, trained from both ends) plus a bias
of its own. Module names reproduce the checkpoint keys, so ``MaskedLM.state_dict()`` is
``bert.*`` and ``cls.predictions.*`` as in ``bert-base-uncased``; the tied decoder weight is left
out of saved files (it is ``bert.embeddings.word_embeddings.weight``), as ``transformers`` does.
Checkpoint folders written this way load as encoders anywhere (``core.pretrained`` ignores ``cls.*``)
and as MLMs here, head included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.base.errors import CheckpointError
from core.base.files import atomic_write
from core.encoder.bert import INIT_STD, BertConfig, BertModel
from core.encoder.loading import CheckpointSource, load_encoder, read_weights, resolve_checkpoint

HEAD_PREFIX = "cls.predictions."
TIED = "cls.predictions.decoder.weight"  # the same tensor as the word embeddings: never saved apart
# transformers' alias of the output bias: older checkpoints hold one or the other, or both
BIAS_ALIASES = ("cls.predictions.bias", "cls.predictions.decoder.bias")
IGNORED = -100  # label of positions that are not predicted (F.cross_entropy's ignore_index)


class PredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))  # (N, H); exact GELU, as the encoder's


class LMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied: (V, H), one Parameter
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x)) + self.bias  # (N, V)


class OnlyMLMHead(nn.Module):
    """The ``cls`` of the checkpoint, holding ``predictions`` (no next-sentence head)."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(config, word_embeddings)


class MaskedLM(nn.Module):
    precision = "fp32"  # "bf16": the forward runs under autocast (core.devices); set by the run

    def __init__(self, encoder: BertModel):
        super().__init__()
        self.bert = encoder
        self.cls = OnlyMLMHead(encoder.config, encoder.embeddings.word_embeddings)
        self.init_head()

    @property
    def config(self) -> BertConfig:
        return self.bert.config

    @property
    def encoder(self) -> BertModel:
        """The encoder under the name the optimizer's parameter groups look for (core.assembly)."""
        return self.bert

    @property
    def device(self) -> torch.device:
        return self.cls.predictions.bias.device

    @torch.no_grad()
    def init_head(self, generator: torch.Generator | None = None) -> None:
        """BERT's init of the head's own parameters; the tied decoder weight is the encoder's."""
        transform = self.cls.predictions.transform
        transform.dense.weight.normal_(0.0, INIT_STD, generator=generator)
        transform.dense.bias.zero_()
        transform.LayerNorm.weight.fill_(1.0)
        transform.LayerNorm.bias.zero_()
        self.cls.predictions.bias.zero_()

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (N, V) at the N positions whose label is not ``IGNORED``, and those labels (N,).

        Only predicted positions reach the decoder: at 15% masking that is a seventh of the
        (B·T, V) product, which dominates the cost of the head."""
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        predicted = labels != IGNORED  # (B, T)
        return self.cls.predictions(hidden[predicted]), labels[predicted]  # (N, V), (N,)

    def head_state(self) -> dict[str, Tensor]:
        """``cls.predictions.*`` without the tied decoder weight."""
        return {f"cls.{key}": t for key, t in self.cls.state_dict().items() if f"cls.{key}" != TIED}

    def save_weights(self, path: Path) -> None:
        """Encoder (``bert.*``) and head (``cls.predictions.*``) into one safetensors file."""
        state = {f"bert.{key}": t for key, t in self.bert.state_dict().items()} | self.head_state()
        atomic_write(path, safetensors.torch.save({key: t.detach().contiguous().cpu() for key, t in state.items()}))


def head_weights(state: dict[str, Tensor], path: Path) -> dict[str, Tensor] | None:
    """The MLM head's tensors in a checkpoint's ``state``, as ``OnlyMLMHead`` names them, or None when
    it has none (encoder-only checkpoints, such as sentence-embedding models). A head with some
    tensors missing is an error naming them."""
    found = {key.removeprefix("cls."): t for key, t in state.items() if key.startswith(HEAD_PREFIX) and key != TIED}
    if not found:
        return None
    bias = next((state[key] for key in BIAS_ALIASES if key in state), None)
    found.pop("predictions.decoder.bias", None)
    if bias is not None:
        found["predictions.bias"] = bias
    wanted = {"predictions.transform.dense.weight", "predictions.transform.dense.bias",
              "predictions.transform.LayerNorm.weight", "predictions.transform.LayerNorm.bias", "predictions.bias"}
    if missing := sorted(wanted - found.keys()):
        raise CheckpointError(f"checkpoint {path} has an incomplete MLM head: missing "
                              + ", ".join(f"cls.{key}" for key in missing))
    if unexpected := sorted(found.keys() - wanted):
        raise CheckpointError(f"checkpoint {path}: unexpected MLM head tensors "
                              + ", ".join(f"cls.{key}" for key in unexpected))
    return found


def load_masked_lm(checkpoint: str | CheckpointSource, *, dropout: float | None = None,
                   seed: int | None = None) -> tuple[MaskedLM, bool]:
    """The encoder of ``checkpoint`` with its MLM head: the checkpoint's when it has one, else BERT's
    init (seeded). Returns the model and whether the head came from the checkpoint."""
    source = checkpoint if isinstance(checkpoint, CheckpointSource) else resolve_checkpoint(checkpoint)
    if source.model_type != "bert":
        raise CheckpointError(f"checkpoint {source.name}: the masked-language model is BERT's; this checkpoint is "
                              f"{source.model_type}")
    encoder = load_encoder(source, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, seed=seed)
    model = MaskedLM(encoder)
    if seed is not None:
        model.init_head(torch.Generator().manual_seed(seed))
    head = head_weights(read_weights(source.weights), source.weights) if source.weights is not None else None
    if head is None:
        return model, False
    expected = model.cls.state_dict()
    for key, tensor in head.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"checkpoint {source.weights}: shape mismatch for cls.{key}: checkpoint "
                                  f"{tuple(tensor.shape)}, model {tuple(expected[key].shape)}")
    with torch.no_grad():
        for key, tensor in head.items():
            expected[key].copy_(tensor)
    return model, True


def save_checkpoint_folder(model: MaskedLM, folder: Path, vocab: Path, lowercase: bool,
                           overrides: dict[str, Any] | None = None) -> None:
    """``folder`` as a checkpoint in the layout every other has: ``config.json`` (the encoder's BERT
    config, ``overrides`` applied), ``model.safetensors``, ``vocab.txt`` and ``tokenizer_config.json``
    (the casing, which ``core.encoder.loading`` reads). Each file is written whole or not at all, the weights
    last: a folder with ``model.safetensors`` is a whole checkpoint."""
    config = {**model.config.to_dict(), "architectures": ["BertForMaskedLM"], "model_type": "bert",
              "hidden_act": "gelu", "position_embedding_type": "absolute", **(overrides or {})}
    tokenizer_config = {"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"}
    for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        atomic_write(folder / name, json.dumps(data, indent=2) + "\n")
    atomic_write(folder / "vocab.txt", Path(vocab).read_bytes())
    model.save_weights(folder / "model.safetensors")
