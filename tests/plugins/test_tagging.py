"""The token-tagging kind: word-piece alignment, tags at first pieces and predictions back per word,
entity F1 by hand, and rows whose tags do not fit their words."""

import pytest
import torch

from core.tasks.spec import TaskSpec
from core.tasks.splits import SplitData, load_split, make_batch
from plugins.standard.tagging import IGNORE, first_pieces
from tests.helpers import bind_tasks


@pytest.fixture(scope="module")
def tokenizer():
    from core.data.tokenizer import Tokenizer
    from core.encoder.loading import resolve_checkpoint

    source = resolve_checkpoint("tiny")
    return Tokenizer(source.vocab, lowercase=source.lowercase)


TAGGED = TaskSpec(name="ner", kind="token-tagging", files={"train": "t", "dev": "d"}, text_columns=("words",),
                  labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"))


def test_word_piece_alignment_round_trips(tokenizer):
    sentences = [["Unbelievably", "good", "!"], ["Anna", "\ufe0f", "Paris-based", "co."], ["a"] * 40]
    ids, word_ids = tokenizer.encode_words(sentences, 16)
    expected_words = [[0, 1, 2], [0, 2, 3], list(range(14))]  # a lone variation selector has no piece; 16 - 2 specials
    assert len(tokenizer.encode(["Unbelievably"], 16)[0]) > 3  # a word of several pieces, between [CLS] and [SEP]
    for words, pieces, alignment, expected in zip(sentences, ids, word_ids, expected_words):
        assert len(pieces) == len(alignment) <= 16 and alignment[0] == alignment[-1] == -1
        starts = first_pieces(alignment)
        assert [word for _, word in starts] == expected  # each word once, in order, until truncation
        for position, word in starts:
            assert alignment[position - 1] != word  # the first piece of its word
            own = [piece for piece, owner in zip(pieces, alignment) if owner == word]
            assert tokenizer.decode(own).replace(" ", "") == words[word].lower()  # its pieces spell it


def test_tags_go_to_first_pieces_and_predictions_come_back_per_word(tokenizer):
    task = bind_tasks(TAGGED)["ner"]
    sentences = [["Anna", "Lee", "visits", "Paris-based", "Unbelievably"], ["x", "\ufe0f", "Lee"], ["Paris"] * 20]
    gold = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["O", "B-LOC", "B-PER"], ["B-LOC"] + ["I-LOC"] * 19]
    encoded = task.kind.encode(TAGGED, [sentences], tokenizer, 12)
    labels = [task.parse_label(" ".join(sentence)) for sentence in gold]  # whitespace-separated tags are read
    data = SplitData(task, "dev", ["a", "b", "c"], encoded["sequences"], task.kind.stack_labels(TAGGED, labels),
                     extras={name: encoded[name] for name in ("word_ids", "words")})
    batch = make_batch(data, [0, 1, 2], tokenizer.pad)
    tagged = batch.labels != IGNORE
    assert tagged.sum(dim=1).tolist() == [5, 2, 10]  # a first piece per word that has one, until truncation
    output = torch.zeros(*batch.labels.shape, len(TAGGED.labels))
    output[tagged] = torch.nn.functional.one_hot(batch.labels[tagged], len(TAGGED.labels)).float()
    predicted = task.predict(output, batch)
    assert predicted[0] == gold[0]
    assert predicted[1] == ["O", "O", "B-PER"]  # the word without a piece is "O", the next keeps its own tag
    assert predicted[2] == gold[2][:10] + ["O"] * 10  # words cut off by the length are "O"
    assert task.loss(output * 50, batch).item() < 1e-6  # the loss reads the same positions


def test_entity_f1_by_hand():
    task = bind_tasks(TAGGED)["ner"]
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "O", "B-LOC"]]
    # gold entities: PER (0-1), LOC (3), ORG (0-1) of the second: 3. Predicted: PER (0-1) right, LOC (3) right
    # (CoNLL rules: an I- tag after O opens an entity), ORG (0) wrong (its span is short), LOC (2) wrong: 4.
    precision, recall = 2 / 4, 2 / 3
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 == pytest.approx(4 / 7)
    assert task.kind.gold(TAGGED, [[1, 2, 0, 3], [5, 6, 0]]) == gold  # tag ids -> the tags the metrics read
    got = {name: metric(predicted, gold) for name, metric in task.metric_functions.items()}
    assert got == {"entity_f1": pytest.approx(f1), "entity_precision": pytest.approx(precision),
                   "entity_recall": pytest.approx(recall)}
    assert task.metrics[0] == "entity_f1"  # the task's score



def test_a_tag_list_that_does_not_fit_its_words_skips_the_row(tmp_path, tokenizer, caplog):
    spec = TaskSpec(name="chunks", kind="token-tagging", files={"train": "tags.csv", "dev": "tags.csv"},
                    text_columns=("tokens",), label_column="tags", labels=("O", "B-place", "I-place", "B-name"))
    (tmp_path / "tags.csv").write_text("id\ttokens\ttags\n"
                                       "a\tanna lives here\tB-name O O\n"
                                       "b\tanna lives here\tB-name O\n"  # a tag short
                                       "c\tparis\tB-place O\n"  # a tag too many
                                       "d\tlee\tB-person\n")  # not a tag of the task
    with caplog.at_level("WARNING", logger="platform"):
        data = load_split(bind_tasks(spec)["chunks"], "train", data_dir=tmp_path, tokenizer=tokenizer, max_length=16)
    assert data.ids == ["a"] and data.labels == [[3, 0, 0]]
    assert ("skipped 3 of 4 rows with a missing, unparsable or mismatched 'tags' label (first: line 3, id b)"
            in caplog.text)
    assert make_batch(data, [0], tokenizer.pad).labels[0, 1:4].tolist() == [3, 0, 0]
