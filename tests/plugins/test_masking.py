"""The built-in maskers and BERT's replacement rule, on real packed SST text and fixed seeds."""

import pytest
import torch

from core.data.tokenizer import Tokenizer
from core.encoder.loading import resolve_checkpoint
from core.encoder.mlm import IGNORED
from core.pretrain.corpus import pack, read_texts
from core.pretrain.masking import ReplacementRule, Vocabulary, mask_batch, mask_sequence
from plugins.standard.maskers import SpanConfig, Spans, StaticTokens, Tokens, WholeWords, span_length_probabilities
from tasks.sst import SST
from tests.helpers import bind_tasks

MASKERS = {"dynamic": Tokens(), "static": StaticTokens(), "whole-word": WholeWords(), "span": Spans()}
RULE = ReplacementRule()


@pytest.fixture(scope="module")
def tokenizer():
    source = resolve_checkpoint("tiny")  # minilm's uncased vocabulary
    return Tokenizer(source.vocab, lowercase=True)


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return Vocabulary.of(tokenizer)


@pytest.fixture(scope="module")
def sequences(tokenizer, data_dir):
    """300 SST training sentences packed into sequences of 64 tokens (many multi-piece words)."""
    texts = read_texts("sst", bind_tasks(SST), data_dir, limit=300)
    return pack(tokenizer.encode_pieces(texts), 64, tokenizer.cls_id, tokenizer.sep_id)


def masked(masker, sequences, vocab, seed=0, keys=None):
    keys = list(range(len(sequences))) if keys is None else keys
    return mask_batch(masker, sequences, keys, list(range(len(sequences))), vocab, RULE, seed)


@pytest.mark.parametrize("name", MASKERS)
def test_about_15_percent_of_ordinary_tokens_are_predicted(name, sequences, vocab):
    batch = masked(MASKERS[name], sequences, vocab)
    ids = batch["input_ids"]
    original = torch.where(batch["labels"] != IGNORED, batch["labels"], ids)
    ordinary = (batch["attention_mask"] == 1) & ~vocab.special[original]
    predicted = batch["labels"] != IGNORED
    rate = predicted.sum().item() / ordinary.sum().item()
    # token maskers hit the budget exactly (rounding aside); word and span maskers stop at the last unit that fits
    low = 0.145 if name in ("dynamic", "static") else 0.13
    assert low <= rate <= 0.155, rate


@pytest.mark.parametrize("name", MASKERS)
def test_predicted_tokens_follow_80_10_10(name, sequences, vocab):
    batch = masked(MASKERS[name], sequences * 4, vocab)  # four visits of each: more draws
    predicted = batch["labels"] != IGNORED
    inputs, labels = batch["input_ids"][predicted], batch["labels"][predicted]
    n = len(labels)
    assert n > 4000
    as_mask = (inputs == vocab.mask_id).float().mean().item()
    kept = (inputs == labels).float().mean().item()
    replaced = ((inputs != labels) & (inputs != vocab.mask_id)).float().mean().item()
    assert as_mask == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1, abs=0.015)  # a random draw equal to the original is rare (1 in 28k)
    assert replaced == pytest.approx(0.1, abs=0.015)
    assert not vocab.special[inputs[inputs != vocab.mask_id]].any(), "random replacements are ordinary tokens"


@pytest.mark.parametrize("name", MASKERS)
def test_special_tokens_and_padding_are_never_masked(name, sequences, vocab):
    batch = masked(MASKERS[name], sequences, vocab)
    for row, sequence in enumerate(sequences):
        ids = torch.tensor(sequence)
        special = vocab.special[ids]
        assert special[0] and special[-1] and special.sum() >= 2  # [CLS] … [SEP]
        assert (batch["labels"][row, :len(ids)][special] == IGNORED).all()
        assert torch.equal(batch["input_ids"][row, :len(ids)][special], ids[special])
        assert (batch["labels"][row, len(ids):] == IGNORED).all()
        assert (batch["input_ids"][row, len(ids):] == vocab.pad_id).all()


@pytest.mark.parametrize("name", ["whole-word", "span"])
def test_all_pieces_of_a_word_are_masked_together(name, sequences, vocab, tokenizer):
    batch = masked(MASKERS[name], sequences, vocab)
    multi_piece_words = 0
    for row, sequence in enumerate(sequences):
        ids = torch.tensor(sequence)
        predicted = (batch["labels"][row, :len(ids)] != IGNORED).tolist()
        words = torch.cumsum(vocab.word_starts(ids).long(), 0).tolist()  # word number of every piece
        for word in set(words):
            flags = {p for p, w in zip(predicted, words) if w == word}
            assert len(flags) == 1, f"word {word} of sequence {row} is partly masked: {tokenizer.decode(ids)}"
            multi_piece_words += words.count(word) > 1 and flags == {True}
    assert multi_piece_words > 20  # the property was exercised on words of several pieces


def test_the_token_masker_splits_words(sequences, vocab):
    """The contrast that makes the previous test meaningful: plain token masking masks parts of words."""
    batch = masked(MASKERS["dynamic"], sequences, vocab)
    partial = 0
    for row, sequence in enumerate(sequences):
        ids = torch.tensor(sequence)
        predicted = batch["labels"][row, :len(ids)] != IGNORED
        continuation = vocab.continuation[ids] & ~vocab.word_starts(ids)
        partial += int((predicted[1:] != predicted[:-1])[continuation[1:]].sum())
    assert partial > 20


def test_dynamic_masks_change_with_the_visit_static_ones_do_not(sequences, vocab):
    first, again = sequences[:8], sequences[:8]
    for name, same in (("dynamic", False), ("static", True)):
        a = masked(MASKERS[name], first, vocab, keys=list(range(8)))
        b = masked(MASKERS[name], again, vocab, keys=list(range(100, 108)))  # a later visit of the same sequences
        assert torch.equal(a["labels"], b["labels"]) is same, name


@pytest.mark.parametrize("name", MASKERS)
def test_masks_are_a_function_of_seed_and_key(name, sequences, vocab):
    a = masked(MASKERS[name], sequences[:16], vocab, seed=5)
    b = masked(MASKERS[name], sequences[:16], vocab, seed=5)
    c = masked(MASKERS[name], sequences[:16], vocab, seed=6)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_span_lengths_are_a_clipped_geometric_with_spanbert_mean():
    probs = span_length_probabilities(0.2, 10)
    assert probs.sum().item() == pytest.approx(1.0)
    assert (probs[1:] / probs[:-1]).allclose(torch.full((9,), 0.8, dtype=torch.float64))
    mean = (probs * torch.arange(1, 11)).sum().item()
    assert mean == pytest.approx(3.8, abs=0.05)  # SpanBERT, section 3.1: "mean span length 3.8"


def test_realised_spans_are_runs_of_about_the_mean_length(vocab, tokenizer):
    """One-piece words, a low rate so spans rarely touch: masked runs measure the drawn lengths."""
    ids = torch.tensor([tokenizer.cls_id] + [2000 + i % 500 for i in range(4000)] + [tokenizer.sep_id])
    lengths = []
    for seed in range(5):
        _, labels = mask_sequence(Spans(SpanConfig(tries=400)), ids, vocab, ReplacementRule(rate=0.03),
                                  torch.Generator().manual_seed(seed))
        predicted = (labels != IGNORED).long().tolist()
        runs = "".join(map(str, predicted)).split("0")
        lengths += [len(r) for r in runs if r]
    mean = sum(lengths) / len(lengths)
    assert 3.2 <= mean <= 4.6, mean
    assert max(lengths) <= 20 and min(lengths) >= 1


def test_a_piece_after_a_separator_starts_a_word(tokenizer, vocab):
    ids = torch.tensor(tokenizer.encode_pieces(["hyperventilating"])[0])
    assert len(ids) == 4 and vocab.continuation[ids[1:]].all()  # hyper ##vent ##ila ##ting
    split = torch.cat([torch.tensor([tokenizer.cls_id]), ids[:2], torch.tensor([tokenizer.sep_id]), ids[2:]])
    assert vocab.word_starts(split).tolist() == [True, True, False, True, True, False]


def test_replacement_shares_are_checked():
    with pytest.raises(ValueError, match="exceed 1"):
        ReplacementRule(mask=0.9, random=0.2)
