"""Tokenization for BERT-style encoders: one :class:`Tokenizer` API over three kinds of files.

- ``vocab.txt`` (WordPiece; BERT, DistilBERT, ELECTRA, MPNet): the pipeline ``transformers``' fast BERT
  tokenizer builds: BERT text normalisation (optionally lower-casing), BERT pre-tokenization, greedy
  longest-match WordPiece, and a template that adds the start and separator tokens and token type ids;
- ``vocab.json`` + ``merges.txt`` (byte-level BPE; RoBERTa): GPT-2's byte-level pre-tokenization and merges,
  and RoBERTa's template (``<s> a </s></s> b </s>``);
- ``tokenizer.json`` (any ``tokenizers`` pipeline, e.g. DeBERTa-v2's SentencePiece converted by
  ``transformers``): read as the checkpoint wrote it, template included.

Which token is the padding, start, separator, mask and unknown one is the architecture's
(:class:`SpecialTokens`). Everything runs in the Rust ``tokenizers`` library, so batches are encoded in
parallel. Encoding never pads: sequences are padded per batch by ``pad``.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import attrs
import numpy as np
import torch
from tokenizers import Tokenizer as _RustTokenizer
from tokenizers import decoders
from tokenizers.models import BPE, WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer, ByteLevel
from tokenizers.processors import RobertaProcessing, TemplateProcessing

from core.base.errors import CheckpointError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ROLES = ("pad", "unk", "cls", "sep", "mask")  # the order of ``Tokenizer.special_ids``


@attrs.frozen
class SpecialTokens:
    """The strings of an architecture's special tokens, and how it joins two texts: BERT's
    ``[CLS] a [SEP] b [SEP]`` (the second text of token type 1), or RoBERTa's ``<s> a </s></s> b </s>``
    (``double_separator``; MPNet's too)."""

    pad: str = "[PAD]"
    unk: str = "[UNK]"
    cls: str = "[CLS]"
    sep: str = "[SEP]"
    mask: str = "[MASK]"
    double_separator: bool = False

    def tokens(self) -> tuple[str, ...]:
        """The five tokens in the order of :data:`ROLES`."""
        return tuple(getattr(self, role) for role in ROLES)


BERT_SPECIALS = SpecialTokens()
ROBERTA_SPECIALS = SpecialTokens("<pad>", "<unk>", "<s>", "</s>", "<mask>", double_separator=True)


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
    """Uncased (default) or cased WordPiece tokenizer over the vocabulary in ``vocab_path``; the other
    kinds of files through :meth:`byte_level_bpe` and :meth:`from_file`."""

    def __init__(self, vocab_path: str | Path, lowercase: bool = True, specials: SpecialTokens = BERT_SPECIALS):
        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise CheckpointError(f"WordPiece vocabulary not found: {self.vocab_path}")
        self.lowercase = bool(lowercase)
        contents = self.vocab_path.read_bytes()
        digest = hashlib.sha256(contents + (b"|lower" if self.lowercase else b"|cased"))
        if specials != BERT_SPECIALS:  # BERT's cache keys stay what they were
            digest.update(repr(specials).encode())

        vocab = WordPiece.read_file(str(self.vocab_path))
        missing = [t for t in specials.tokens() if t not in vocab]
        if missing:
            raise CheckpointError(f"{self.vocab_path} lacks the special tokens {missing}; "
                             f"a BERT vocabulary must contain all of {list(specials.tokens())}")
        tok = _RustTokenizer(WordPiece(vocab, unk_token=specials.unk, max_input_chars_per_word=100))
        tok.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                        strip_accents=None, lowercase=self.lowercase)
        tok.pre_tokenizer = BertPreTokenizer()
        tok.post_processor = _template(specials, vocab)
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        self._finish(tok, specials, digest.hexdigest()[:12], len(vocab))

    @classmethod
    def byte_level_bpe(cls, vocab_path: str | Path, merges_path: str | Path,
                       specials: SpecialTokens = ROBERTA_SPECIALS) -> Tokenizer:
        """GPT-2's byte-level BPE over ``vocab.json`` and ``merges.txt`` with RoBERTa's template, as
        ``transformers``' ``RobertaTokenizerFast`` builds it (case is kept: byte-level BPE never lower-cases)."""
        paths = [Path(vocab_path), Path(merges_path)]
        for path in paths:
            if not path.is_file():
                raise CheckpointError(f"byte-level BPE file not found: {path}")
        self = cls.__new__(cls)
        self.vocab_path, self.lowercase = paths[0], False
        digest = hashlib.sha256(b"|".join(path.read_bytes() for path in paths) + repr(specials).encode())
        try:
            vocab, merges = BPE.read_file(str(paths[0]), str(paths[1]))
        except Exception as err:  # the Rust reader says what is wrong, not which file
            raise CheckpointError(f"cannot read byte-level BPE files {paths[0]} and {paths[1]}: {err}") from err
        missing = [t for t in specials.tokens() if t not in vocab]
        if missing:
            raise CheckpointError(f"{paths[0]} lacks the special tokens {missing}; this architecture's vocabulary "
                                  f"must contain all of {list(specials.tokens())}")
        tok = _RustTokenizer(BPE(vocab, merges, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                                 fuse_unk=False))
        tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
        tok.post_processor = RobertaProcessing((specials.sep, vocab[specials.sep]), (specials.cls, vocab[specials.cls]),
                                               trim_offsets=True, add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        self._finish(tok, specials, digest.hexdigest()[:12], len(vocab))
        return self

    @classmethod
    def from_file(cls, path: str | Path, specials: SpecialTokens = BERT_SPECIALS) -> Tokenizer:
        """The ``tokenizers`` pipeline saved in ``tokenizer.json``, template included; ``specials`` names
        which of its tokens pad, start, separate, mask and stand for unknown text. Padding and truncation
        saved in the file are dropped: encoding never pads, and truncates to each call's ``max_length``."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"tokenizer file not found: {path}")
        self = cls.__new__(cls)
        self.vocab_path, self.lowercase = path, False
        contents = path.read_bytes()
        try:
            tok = _RustTokenizer.from_str(contents.decode("utf-8"))
        except Exception as err:  # invalid JSON or an unknown component: the Rust message says which
            raise CheckpointError(f"cannot read tokenizer file {path}: {err}") from err
        vocab = tok.get_vocab(with_added_tokens=True)
        missing = [t for t in specials.tokens() if t not in vocab]
        if missing:
            raise CheckpointError(f"{path} lacks the special tokens {missing}; this architecture's tokenizer must "
                                  f"have all of {list(specials.tokens())}")
        if tok.post_processor is None:
            tok.post_processor = _template(specials, vocab)
        digest = hashlib.sha256(contents + repr(specials).encode())
        self._finish(tok, specials, digest.hexdigest()[:12], tok.get_vocab_size(with_added_tokens=True))
        return self

    def _finish(self, tok: _RustTokenizer, specials: SpecialTokens, sha: str, size: int) -> None:
        # Literal "[MASK]" etc. in text map to the special ids, as in the reference tokenizer.
        tok.add_special_tokens(list(specials.tokens()))
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        self._vocab_sha = sha
        self.specials = specials
        ids: dict[str, int] = tok.get_vocab(with_added_tokens=True)
        self._ids = {role: ids[token] for role, token in zip(ROLES, specials.tokens())}
        self._size = size
        processor = tok.post_processor
        # the fewest tokens a sequence may be truncated to: the special tokens, and one per text
        self._minimum = {pair: (processor.num_special_tokens_to_add(pair) if processor else 0) + 1
                         for pair in (False, True)}
        # pre-split words get the space before them that byte-level BPE marks in running text ("Ġword")
        self._word_prefix = " " if type(tok.pre_tokenizer).__name__ == "ByteLevel" else ""
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
        return self._ids["pad"]

    @property
    def cls_id(self) -> int:
        return self._ids["cls"]

    @property
    def sep_id(self) -> int:
        return self._ids["sep"]

    @property
    def mask_id(self) -> int:
        return self._ids["mask"]

    @property
    def unk_id(self) -> int:
        return self._ids["unk"]

    @property
    def vocab_sha(self) -> str:
        """Short hash of the vocabulary and the casing flag: a cache key for encoded data."""
        return self._vocab_sha

    def _truncate_to(self, max_length: int, pair: bool) -> None:
        minimum = self._minimum[pair]
        if not isinstance(max_length, (int, np.integer)) or max_length < minimum:
            raise ValueError(f"max_length must be an int >= {minimum} (room for the special "
                             f"tokens and at least one token per text), got {max_length!r}")
        # The Rust tokenizer holds truncation as state; set it per call (cheap).
        self._tok.enable_truncation(int(max_length), strategy="longest_first")

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """``[CLS] text [SEP]`` ids per text, truncated to ``max_length`` tokens, unpadded."""
        _check_texts(texts, "texts")
        self._truncate_to(max_length, pair=False)
        return [e.ids for e in self._encode_batch(list(texts))]

    def encode_with_offsets(self, texts: list[str], max_length: int) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """``[CLS] text [SEP]`` ids per text, as :meth:`encode`, and per token its character span
        ``(start, end)`` in the text (``(0, 0)`` for [CLS] and [SEP]): to align spans of the raw text
        (entities, answers) with tokens."""
        _check_texts(texts, "texts")
        self._truncate_to(max_length, pair=False)
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
        self._truncate_to(max_length, pair=True)
        encodings = self._encode_batch(list(zip(first, second)))
        return [e.ids for e in encodings], [e.type_ids for e in encodings]

    def encode_words(self, words: list[list[str]], max_length: int) -> tuple[list[list[int]], list[list[int]]]:
        """``[CLS] pieces [SEP]`` ids of pre-split words, truncated to ``max_length`` tokens, and per
        token the index of the word it belongs to (-1 for [CLS] and [SEP]): the word-piece alignment."""
        for i, sentence in enumerate(words):
            _check_texts(sentence, f"words[{i}]")
        self._truncate_to(max_length, pair=False)
        prefix = self._word_prefix
        encodings = self._tok.encode_batch([[prefix + word for word in sentence] for sentence in words],
                                           is_pretokenized=True)
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
        """Ids of [PAD], [UNK], [CLS], [SEP], [MASK] (or the architecture's tokens in these roles)."""
        return tuple(self._ids.values())


def _template(specials: SpecialTokens, vocab: dict[str, int]) -> TemplateProcessing:
    """BERT's ``[CLS] a [SEP] b [SEP]`` (b of token type 1), or with ``double_separator`` ``<s> a </s></s> b </s>``
    (as ``transformers`` builds MPNet's)."""
    cls, sep = specials.cls, specials.sep
    between = f"{sep} {sep}" if specials.double_separator else sep
    return TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {between} $B:1 {sep}:1",
                              special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])

