"""WordPiece tokenization for BERT-style encoders, built from a plain ``vocab.txt``.

The pipeline is the one BERT uses (and ``transformers``' fast BERT tokenizer builds): BERT text
normalisation (optionally lower-casing), BERT pre-tokenization, greedy longest-match WordPiece, and a
template that adds ``[CLS]``/``[SEP]`` and token type ids. It runs in the Rust ``tokenizers`` library,
so batches are encoded in parallel. Encoding never pads: sequences are padded per batch by ``pad``.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer as _RustTokenizer
from tokenizers import decoders
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing

from core.base.errors import CheckpointError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _check_texts(texts, name: str) -> None:
    """Reject what is not text, naming the offending position. An empty string is fine: it encodes
    to [CLS] [SEP] (a data row with an empty sentence still needs a prediction)."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, not a single string")
    for i, text in enumerate(texts):
        if text is None:
            raise ValueError(f"{name}[{i}] is None; expected a string")
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is a {type(text).__name__}; expected a string")


class Tokenizer:
    """Uncased (default) or cased WordPiece tokenizer over the vocabulary in ``vocab_path``."""

    def __init__(self, vocab_path: str | Path, lowercase: bool = True):
        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise CheckpointError(f"WordPiece vocabulary not found: {self.vocab_path}")
        self.lowercase = bool(lowercase)
        contents = self.vocab_path.read_bytes()
        digest = hashlib.sha256(contents + (b"|lower" if self.lowercase else b"|cased"))
        self._vocab_sha = digest.hexdigest()[:12]

        vocab = WordPiece.read_file(str(self.vocab_path))
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise CheckpointError(f"{self.vocab_path} lacks the special tokens {missing}; "
                             f"a BERT vocabulary must contain all of {list(SPECIAL_TOKENS)}")
        tok = _RustTokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                        strip_accents=None, lowercase=self.lowercase)
        tok.pre_tokenizer = BertPreTokenizer()
        cls, sep = vocab["[CLS]"], vocab["[SEP]"]
        tok.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
        # Literal "[MASK]" etc. in text map to the special ids, as in the reference tokenizer.
        tok.add_special_tokens(list(SPECIAL_TOKENS))
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        tok.no_padding()
        self._tok = tok
        self._ids = {t: vocab[t] for t in SPECIAL_TOKENS}
        self._size = len(vocab)
        # encode_batch_fast skips offset tracking, which we never use.
        self._encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)

    def __repr__(self) -> str:
        return (f"Tokenizer({str(self.vocab_path)!r}, lowercase={self.lowercase}, "
                f"vocab_size={self.vocab_size})")

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def pad_id(self) -> int:
        return self._ids["[PAD]"]

    @property
    def cls_id(self) -> int:
        return self._ids["[CLS]"]

    @property
    def sep_id(self) -> int:
        return self._ids["[SEP]"]

    @property
    def mask_id(self) -> int:
        return self._ids["[MASK]"]

    @property
    def unk_id(self) -> int:
        return self._ids["[UNK]"]

    @property
    def vocab_sha(self) -> str:
        """Short hash of the vocabulary and the casing flag: a cache key for encoded data."""
        return self._vocab_sha

    def _truncate_to(self, max_length: int, minimum: int) -> None:
        if not isinstance(max_length, (int, np.integer)) or max_length < minimum:
            raise ValueError(f"max_length must be an int >= {minimum} (room for the special "
                             f"tokens and at least one token per text), got {max_length!r}")
        # The Rust tokenizer holds truncation as state; set it per call (cheap).
        self._tok.enable_truncation(int(max_length), strategy="longest_first")

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """``[CLS] text [SEP]`` ids per text, truncated to ``max_length`` tokens, unpadded."""
        _check_texts(texts, "texts")
        self._truncate_to(max_length, 3)
        return [e.ids for e in self._encode_batch(list(texts))]

    def encode_with_offsets(self, texts: list[str], max_length: int) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """``[CLS] text [SEP]`` ids per text, as :meth:`encode`, and per token its character span
        ``(start, end)`` in the text (``(0, 0)`` for [CLS] and [SEP]): to align spans of the raw text
        (entities, answers) with tokens."""
        _check_texts(texts, "texts")
        self._truncate_to(max_length, 3)
        encodings = self._tok.encode_batch(list(texts))  # the fast path computes no offsets
        return [e.ids for e in encodings], [[(start, end) for start, end in e.offsets] for e in encodings]

    def encode_pairs(self, first: list[str], second: list[str],
                     max_length: int) -> tuple[list[list[int]], list[list[int]]]:
        """``[CLS] a [SEP] b [SEP]`` ids and token type ids, longest-first truncated, unpadded."""
        _check_texts(first, "first")
        _check_texts(second, "second")
        if len(first) != len(second):
            raise ValueError(f"first and second must have equal lengths, "
                             f"got {len(first)} and {len(second)}")
        self._truncate_to(max_length, 4)
        encodings = self._encode_batch(list(zip(first, second)))
        return [e.ids for e in encodings], [e.type_ids for e in encodings]

    def encode_words(self, words: list[list[str]], max_length: int) -> tuple[list[list[int]], list[list[int]]]:
        """``[CLS] pieces [SEP]`` ids of pre-split words, truncated to ``max_length`` tokens, and per
        token the index of the word it belongs to (-1 for [CLS] and [SEP]): the word-piece alignment."""
        for i, sentence in enumerate(words):
            _check_texts(sentence, f"words[{i}]")
        self._truncate_to(max_length, 3)
        encodings = self._tok.encode_batch([list(sentence) for sentence in words], is_pretokenized=True)
        return ([e.ids for e in encodings],
                [[-1 if w is None else w for w in e.word_ids] for e in encodings])

    def pad(self, sequences: list[list[int]], token_type_ids: list[list[int]] | None = None,
            pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
        """Right-pad to the longest sequence (rounded up to ``pad_to_multiple_of``).

        Returns long tensors ``input_ids``, ``token_type_ids`` and ``attention_mask``, each (B, T).
        """
        if len(sequences) == 0:
            raise ValueError("pad() needs at least one sequence")
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))  # (B,)
        if token_type_ids is not None:
            type_lengths = np.fromiter(map(len, token_type_ids), dtype=np.int64)
            if type_lengths.shape != lengths.shape or (type_lengths != lengths).any():
                raise ValueError("token_type_ids must have exactly one entry per input id")
        width = int(lengths.max())
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of must be a positive int, "
                                 f"got {pad_to_multiple_of!r}")
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        total = int(lengths.sum())
        mask = np.arange(width) < lengths[:, None]  # (B, T); row-major order matches the flat ids
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = np.fromiter(itertools.chain.from_iterable(sequences), np.int64, count=total)
        types = np.zeros(mask.shape, dtype=np.int64)
        if token_type_ids is not None:
            types[mask] = np.fromiter(itertools.chain.from_iterable(token_type_ids), np.int64,
                                      count=total)
        return {
            "input_ids": torch.from_numpy(ids),
            "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text for a sequence of ids (a list or a 1-D tensor)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def encode_pieces(self, texts: list[str]) -> list[list[int]]:
        """WordPiece ids of each text without special tokens and untruncated (for packing texts into
        sequences of a chosen length: core.corpus)."""
        _check_texts(texts, "texts")
        self._tok.no_truncation()
        return [e.ids for e in self._encode_batch(list(texts), add_special_tokens=False)]

    def vocabulary(self) -> list[str]:
        """Every token string, in id order ("##" marks word continuations)."""
        tokens = [""] * self._size
        for token, index in self._tok.get_vocab(with_added_tokens=True).items():
            if index < self._size:
                tokens[index] = token
        return tokens

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of [PAD], [UNK], [CLS], [SEP], [MASK]."""
        return tuple(self._ids.values())

