"""core.corpus: text sources (train splits only, text files), packing, and the held-out slice."""

import pytest

from core.base.errors import ConfigError
from core.data.tables import DataError
from core.data.tokenizer import Tokenizer
from core.encoder.loading import resolve_checkpoint
from core.pretrain.corpus import load_corpus, pack, read_texts, split_heldout
from core.tasks.spec import TaskSpec
from tasks.quora import QUORA
from tasks.sst import SST
from tests.helpers import bind_tasks

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(resolve_checkpoint("tiny").vocab, lowercase=True)


def test_packing_keeps_every_token_in_order_within_the_length():
    texts = [[1000 + i] * n for i, n in enumerate([5, 3, 9, 1, 7, 2, 4, 30, 6])]
    sequences = pack(texts, 12, CLS, SEP)
    assert all(len(s) <= 12 and s[0] == CLS and s[-1] == SEP for s in sequences)
    ordinary = [t for s in sequences for t in s if t not in (CLS, SEP)]
    assert ordinary == [t for text in texts for t in text]  # nothing lost, nothing reordered
    assert sequences[0] == [CLS, *texts[0], SEP, *texts[1], SEP]  # 1 + 6 + 4 = 11; text 2 needs 10 more
    assert sequences[1] == [CLS, *texts[2], SEP]
    assert [s.count(1007) for s in sequences if 1007 in s] == [10, 10, 10]  # the 30-token text, split


def test_a_text_longer_than_a_sequence_is_split():
    sequences = pack([[7] * 25], 10, CLS, SEP)
    assert sequences == [[CLS] + [7] * 8 + [SEP]] * 3 + [[CLS, 7, SEP]]


def test_packing_fills_sequences(tokenizer, tiny_data_dir):
    pieces = tokenizer.encode_pieces(read_texts("quora", bind_tasks(QUORA), tiny_data_dir, limit=500))
    sequences = pack(pieces, 128, tokenizer.cls_id, tokenizer.sep_id)
    fill = sum(map(len, sequences)) / (128 * len(sequences))
    assert fill > 0.9, fill  # little compute goes to padding
    assert sum(map(len, sequences)) == sum(map(len, pieces)) + len(pieces) + len(sequences)  # one [SEP] per text


def test_heldout_is_every_nth_sequence():
    sequences = [[i] for i in range(10)]
    train, heldout = split_heldout(sequences, 3)
    assert heldout == [[2], [5], [8]] and train == [[0], [1], [3], [4], [6], [7], [9]]


def test_a_task_contributes_its_train_split_only(tmp_path):
    (tmp_path / "train.csv").write_text("id\tsentence1\tsentence2\tis_duplicate\n"
                                        "a\tfirst question\tsecond question\t1\nb\tthird one\t\t\n")
    (tmp_path / "dev.csv").write_text("id\tsentence1\tsentence2\tis_duplicate\nc\tdevonly words\tmore dev\t0\n")
    task = TaskSpec(name="pairs", kind="pair-classification", files={"train": "train.csv", "dev": "dev.csv"},
                    text_columns=("sentence1", "sentence2"), label_column="is_duplicate")
    # both sentences of a row, in order; an unlabelled row still has text; an empty cell gives an empty text
    assert read_texts("pairs", bind_tasks(task), tmp_path, None) == ["first question", "second question",
                                                                     "third one", ""]


def test_sst_texts_are_its_train_sentences(data_dir):
    texts = read_texts("sst", bind_tasks(SST), data_dir, limit=3)
    every = read_texts("sst", bind_tasks(SST), data_dir, limit=None)
    assert len(texts) == 3 and len(every) == 8544 - 1000 and every[0].startswith("The Rock is destined")
    assert [every.index(text) for text in texts] == sorted(every.index(text) for text in texts)  # a sample, in order


def test_text_files_give_one_text_per_non_empty_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first line\n\n   \nsecond line  \nthird\n")
    assert read_texts(str(path), {}, None, None) == ["first line", "second line", "third"]
    assert read_texts(str(path), {}, None, 2) == ["first line", "second line"]


def test_unknown_source_and_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"--text: 'nope' is neither a task \(sst\) nor a text file"):
        read_texts("nope", bind_tasks(SST), None, None)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"ok\n\xff\xfe broken")
    with pytest.raises(DataError, match="blob.txt: not UTF-8 text"):
        read_texts(str(binary), {}, None, None)
    unreadable = tmp_path / "gone.txt"
    unreadable.symlink_to("/proc/self/mem")  # a file no one, root included, can read from its start
    with pytest.raises(DataError, match=r"^--text .*gone.txt: cannot read the file \(Input/output error\)$"):
        read_texts(str(unreadable), {}, None, None)


def test_corpus_needs_something_held_out(tmp_path, tokenizer):
    path = tmp_path / "short.txt"
    path.write_text("a few words\nand a few more\n")
    with pytest.raises(ConfigError, match="--heldout-every 50: .* packs into 1 sequence"):
        load_corpus((str(path),), {}, None, tokenizer, 128, 50)


def test_corpus_of_tasks_and_files_in_order(tmp_path, tokenizer, tiny_data_dir):
    path = tmp_path / "domain.txt"
    path.write_text("\n".join(f"domain sentence number {i}" for i in range(40)) + "\n")
    corpus = load_corpus(("sst", str(path)), bind_tasks(SST), tiny_data_dir, tokenizer, 32, 4, limit=30)
    assert corpus.texts == {"sst": 30, str(path): 30}
    texts = read_texts("sst", bind_tasks(SST), tiny_data_dir, 30) + [f"domain sentence number {i}" for i in range(30)]
    packed = pack(tokenizer.encode_pieces(texts), 32, tokenizer.cls_id, tokenizer.sep_id)
    assert (corpus.train, corpus.heldout) == split_heldout(packed, 4)
    assert packed[0][1:6] == tokenizer.encode_pieces(texts[:1])[0][:5]  # the first text opens the first sequence
    assert tokenizer.decode(packed[-1]).endswith("domain sentence number 29")
    assert corpus.train_tokens == sum(map(len, corpus.train))
