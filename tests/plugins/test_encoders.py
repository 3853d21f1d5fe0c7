"""The built-in encoder architectures (plugins/standard/encoders) against transformers' own classes.

Each architecture, in two configurations, is random-initialised by transformers, saved with
``save_pretrained`` beside its tokenizer's files, read back through the platform's registry
(``--checkpoint FOLDER``), and run on a padded batch: every hidden state (the last one included) must
agree with transformers' within 1e-5 in float32 at the real positions. The tokenizers are compared with
transformers' fast tokenizers of the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.build.parts import Parts
from core.data.tokenizer import BERT_SPECIALS, ROBERTA_SPECIALS, SpecialTokens
from core.encoder.loading import load_encoder, resolve_checkpoint

transformers = pytest.importorskip("transformers")

TOL = 1e-5
TEXTS = ["The cat sat on the mat.", "Unbelievably GOOD, isn't it?", "", "naïve café, 1999 — hello world!!",
         "a " * 40]
SECOND = ["A dog.", "no", "something else entirely", "x", "b " * 40]
MPNET_SPECIALS = SpecialTokens("<pad>", "[UNK]", "<s>", "</s>", "<mask>", double_separator=True)


# ---------------------------------------------------------------------------------------------------
# checkpoint folders: a transformers model saved beside its tokenizer's files


def minilm_vocab() -> list[str]:
    """The uncased BERT vocabulary the tiny preset borrows (30522 WordPiece tokens)."""
    return resolve_checkpoint("tiny").vocab.read_text(encoding="utf-8").splitlines()


def wordpiece_files(folder: Path, tokens: list[str]) -> int:
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return len(tokens)


def bpe_files(folder: Path) -> int:
    """A byte-level BPE (vocab.json, merges.txt) trained on a few sentences, RoBERTa's specials first."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    corpus = TEXTS + SECOND + ["the quick brown fox jumps over the lazy dog"] * 5
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    return bpe.get_vocab_size()


def checkpoint(folder: Path, model) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def padded_batch(vocab_size: int, pad_id: int, types: bool, seed: int = 0):
    """Four sequences of 11, 7, 3 and 11 tokens, right-padded with ``pad_id``."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [11, 7, 3, 11]
    ids = torch.randint(5, vocab_size, (len(lengths), max(lengths)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids[mask == 0] = pad_id
    token_types = torch.zeros_like(ids)
    if types:
        token_types[:, 5:] = 1
        token_types[mask == 0] = 0
    return ids, mask, token_types


def parity(folder: Path, theirs, types: bool = False, pooler: bool = True, batch=padded_batch) -> dict[str, float]:
    """The largest differences between our encoder read from ``folder`` and ``theirs`` on a padded batch (made by
    ``batch(vocab_size, pad_id, types)``); ``pooler``: compare the pooler's outputs too."""
    source = Parts(plugins=(), checkpoint=str(folder)).source
    ours = load_encoder(source).eval()
    theirs = theirs.eval()
    ids, mask, token_types = batch(source.config.vocab_size, source.config.pad_token_id, types)
    extra = {"token_type_ids": token_types} if types else {}
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, output_hidden_states=True, **extra)
        b = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra)
    real = mask.bool()
    assert len(a.hidden_states) == len(b.hidden_states) == source.config.num_hidden_layers + 1
    diffs = {"last_hidden_state": (a.last_hidden_state[real] - b.last_hidden_state[real]).abs().max().item(),
             "hidden_states": max((x[real] - y[real]).abs().max().item()
                                  for x, y in zip(a.hidden_states, b.hidden_states, strict=True))}
    if not source.architecture.pooler:
        assert a.pooler_output is None
    elif pooler:
        diffs["pooler_output"] = (a.pooler_output - b.pooler_output).abs().max().item()
    print(f"\nparity {source.model_type} {folder.name}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return diffs


# ---------------------------------------------------------------------------------------------------
# RoBERTa


ROBERTA_CONFIGS = {
    "small": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40),
    "wider": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
                  max_position_embeddings=66, layer_norm_eps=1e-12, hidden_act="gelu"),
}


def roberta_folder(tmp_path: Path, name: str) -> tuple[Path, object]:
    folder = tmp_path / f"roberta-{name}"
    folder.mkdir()
    size = bpe_files(folder)
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=size, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                        type_vocab_size=1, attn_implementation="eager", **ROBERTA_CONFIGS[name])
    return checkpoint(folder, transformers.RobertaModel(config)), transformers.RobertaModel


@pytest.mark.parametrize("name", ROBERTA_CONFIGS)
def test_roberta_equals_transformers(tmp_path, name):
    folder, cls = roberta_folder(tmp_path, name)
    diffs = parity(folder, cls.from_pretrained(folder, attn_implementation="eager"))
    assert max(diffs.values()) <= TOL, diffs


def test_roberta_tokenizer_equals_transformers(tmp_path):
    folder, _ = roberta_folder(tmp_path, "small")
    ours = Parts(plugins=(), checkpoint=str(folder)).tokenizer
    theirs = transformers.RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    assert ours.encode(TEXTS, 64) == theirs(TEXTS, truncation=True, max_length=64)["input_ids"]
    ids, types = ours.encode_pairs(TEXTS, SECOND, 64)
    assert ids == theirs(TEXTS, SECOND, truncation=True, max_length=64)["input_ids"]
    assert all(set(row) == {0} for row in types)  # one segment
    assert ours.encode(["a " * 40], 10) == theirs(["a " * 40], truncation=True, max_length=10)["input_ids"]
    assert (ours.pad_id, ours.cls_id, ours.sep_id, ours.unk_id, ours.mask_id) == \
        (theirs.pad_token_id, theirs.cls_token_id, theirs.sep_token_id, theirs.unk_token_id, theirs.mask_token_id)
    words = [["The", "cat", "sat"], ["naïve", "café"]]
    prefixed = transformers.RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                                 add_prefix_space=True)
    expected = prefixed(words, is_split_into_words=True)
    ids, word_ids = ours.encode_words(words, 64)
    assert ids == expected["input_ids"]
    assert word_ids == [[-1 if w is None else w for w in expected.word_ids(i)] for i in range(len(words))]


# ---------------------------------------------------------------------------------------------------
# DistilBERT


DISTILBERT_CONFIGS = {
    "gelu": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32),
    "relu": dict(dim=48, n_layers=3, n_heads=6, hidden_dim=80, max_position_embeddings=24, activation="relu"),
}


def distilbert_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"distilbert-{name}"
    folder.mkdir()
    size = wordpiece_files(folder, minilm_vocab())
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=size, attn_implementation="eager", **DISTILBERT_CONFIGS[name])
    return checkpoint(folder, transformers.DistilBertModel(config))


@pytest.mark.parametrize("name", DISTILBERT_CONFIGS)
def test_distilbert_equals_transformers(tmp_path, name):
    folder = distilbert_folder(tmp_path, name)
    diffs = parity(folder, transformers.DistilBertModel.from_pretrained(folder, attn_implementation="eager"))
    assert max(diffs.values()) <= TOL, diffs


# ---------------------------------------------------------------------------------------------------
# ELECTRA


ELECTRA_CONFIGS = {
    "projected": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32),
    "same-width": dict(embedding_size=48, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                       intermediate_size=96, max_position_embeddings=24, type_vocab_size=3),
}


def electra_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"electra-{name}"
    folder.mkdir()
    size = wordpiece_files(folder, minilm_vocab())
    torch.manual_seed(0)
    config = transformers.ElectraConfig(vocab_size=size, attn_implementation="eager", **ELECTRA_CONFIGS[name])
    # a discriminator checkpoint: the encoder under "electra.", beside its prediction head
    return checkpoint(folder, transformers.ElectraForPreTraining(config))


@pytest.mark.parametrize("name", ELECTRA_CONFIGS)
def test_electra_equals_transformers(tmp_path, name):
    folder = electra_folder(tmp_path, name)
    theirs = transformers.ElectraModel.from_pretrained(folder, attn_implementation="eager")
    diffs = parity(folder, theirs, types=True)
    assert max(diffs.values()) <= TOL, diffs


# ---------------------------------------------------------------------------------------------------
# MPNet


MPNET_CONFIGS = {
    "small": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40),
    # longer than half the buckets' exact range both ways, so the logarithmic buckets are read too
    "long": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
                 max_position_embeddings=300, layer_norm_eps=1e-12),
}


def mpnet_folder(tmp_path: Path, name: str) -> Path:
    """MPNet's vocabulary is BERT's with <s>, <pad>, </s>, <unk> before it and <mask> after it."""
    folder = tmp_path / f"mpnet-{name}"
    folder.mkdir()
    size = wordpiece_files(folder, ["<s>", "<pad>", "</s>", "<unk>", *minilm_vocab(), "<mask>"])
    torch.manual_seed(0)
    config = transformers.MPNetConfig(vocab_size=size, pad_token_id=1, attn_implementation="eager",
                                      **MPNET_CONFIGS[name])
    # a masked-language model's checkpoint (the encoder under "mpnet.", no pooler), or a bare encoder's with it
    model = transformers.MPNetForMaskedLM(config) if name == "small" else transformers.MPNetModel(config)
    return checkpoint(folder, model)


@pytest.mark.parametrize("name", MPNET_CONFIGS)
def test_mpnet_equals_transformers(tmp_path, name):
    folder = mpnet_folder(tmp_path, name)
    theirs = transformers.MPNetModel.from_pretrained(folder, attn_implementation="eager")
    # "long": 200 tokens, offsets beyond the exact buckets and past MAX_DISTANCE; "small" has no pooler in its
    # file: both draw their own
    diffs = parity(folder, theirs, pooler=name != "small", batch=long_batch if name == "long" else padded_batch)
    assert max(diffs.values()) <= TOL, diffs


def long_batch(vocab_size: int, pad_id: int, types: bool):
    """Two sequences of 200 and 150 tokens."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab_size, (2, 200), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 150:] = 0
    ids[mask == 0] = pad_id
    return ids, mask, torch.zeros_like(ids)


def test_mpnet_tokenizer_equals_transformers(tmp_path):
    folder = mpnet_folder(tmp_path, "small")
    ours = Parts(plugins=(), checkpoint=str(folder)).tokenizer
    theirs = transformers.MPNetTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True)
    assert ours.encode(TEXTS, 64) == theirs(TEXTS, truncation=True, max_length=64)["input_ids"]
    ids, _ = ours.encode_pairs(TEXTS, SECOND, 64)
    assert ids == theirs(TEXTS, SECOND, truncation=True, max_length=64)["input_ids"]
    assert (ours.pad_id, ours.cls_id, ours.sep_id, ours.unk_id, ours.mask_id) == \
        (theirs.pad_token_id, theirs.cls_token_id, theirs.sep_token_id, theirs.unk_token_id, theirs.mask_token_id)


# ---------------------------------------------------------------------------------------------------
# DeBERTa-v2


DEBERTA_CONFIGS = {
    # v3's shape: no absolute positions, log buckets beyond 4 tokens, projections shared with the positions
    "v3": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, relative_attention=True, position_buckets=8, pos_att_type="p2c|c2p",
               share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
               layer_norm_eps=1e-7),
    # v2-xlarge's: a convolution beside the first layer, position projections of their own, absolute positions,
    # segments, narrower embeddings projected, offsets clamped at 6
    "v2": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
               max_position_embeddings=32, relative_attention=True, max_relative_positions=6,
               pos_att_type=["c2p", "p2c"], share_att_key=False, position_biased_input=True, type_vocab_size=2,
               embedding_size=24, conv_kernel_size=3, conv_act="gelu"),
}


def unigram_file(folder: Path) -> int:
    """A SentencePiece-style tokenizer.json (Metaspace, Unigram) with BERT's special tokens and template."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing

    unigram = SentencePieceUnigramTokenizer()
    corpus = TEXTS + SECOND + ["the quick brown fox jumps over the lazy dog"] * 5
    unigram.train_from_iterator(corpus, vocab_size=120, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
                                unk_token="[UNK]")
    cls, sep = unigram.token_to_id("[CLS]"), unigram.token_to_id("[SEP]")
    unigram.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    unigram.save(str(folder / "tokenizer.json"))
    return unigram.get_vocab_size()


def deberta_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"deberta-{name}"
    folder.mkdir()
    size = unigram_file(folder)
    torch.manual_seed(0)
    config = transformers.DebertaV2Config(vocab_size=size, attn_implementation="eager", **DEBERTA_CONFIGS[name])
    model = transformers.DebertaV2ForMaskedLM(config) if name == "v3" else transformers.DebertaV2Model(config)
    return checkpoint(folder, model)


@pytest.mark.parametrize("name", DEBERTA_CONFIGS)
def test_deberta_v2_equals_transformers(tmp_path, name):
    folder = deberta_folder(tmp_path, name)
    theirs = transformers.DebertaV2Model.from_pretrained(folder, attn_implementation="eager")
    diffs = parity(folder, theirs, types=name == "v2")
    assert max(diffs.values()) <= TOL, diffs
    if name == "v3":  # 200 tokens: offsets far into the log buckets
        diffs = parity(folder, theirs, batch=long_batch)
        assert max(diffs.values()) <= TOL, diffs


def test_deberta_v2_reads_its_tokenizer_json(tmp_path):
    folder = deberta_folder(tmp_path, "v3")
    ours = Parts(plugins=(), checkpoint=str(folder)).tokenizer
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    assert ours.encode(TEXTS, 64) == theirs(TEXTS, truncation=True, max_length=64)["input_ids"]
    ids, types = ours.encode_pairs(TEXTS, SECOND, 64)
    expected = theirs(TEXTS, SECOND, truncation=True, max_length=64, return_token_type_ids=True)
    assert (ids, types) == (expected["input_ids"], expected["token_type_ids"])
    assert ours.cls_id == theirs.convert_tokens_to_ids("[CLS]") and ours.pad_id == 0


def test_a_sentencepiece_checkpoint_without_tokenizer_json_is_refused_saying_how_to_make_one(tmp_path):
    from core.base.errors import CheckpointError

    folder = deberta_folder(tmp_path, "v3")
    (folder / "tokenizer.json").rename(folder / "spm.model")  # stands for the SentencePiece model
    with pytest.raises(CheckpointError, match=r"has no tokenizer\.json.*spm\.model.*save_pretrained"):
        Parts(plugins=(), checkpoint=str(folder)).source


# ---------------------------------------------------------------------------------------------------
# what every architecture offers the rest of the platform


def test_every_builtin_architecture_is_registered():
    registries = Parts(plugins=(), checkpoint="tiny").registries
    assert {"bert", "roberta", "distilbert", "electra", "mpnet", "deberta-v2"} <= set(registries.encoders.names())
    assert registries.encoders["bert"].factory.specials == BERT_SPECIALS
    assert registries.encoders["roberta"].factory.specials == ROBERTA_SPECIALS


FOLDERS = {  # one checkpoint folder of each architecture, small enough to train in seconds
    "roberta": lambda tmp_path: roberta_folder(tmp_path, "small")[0],
    "distilbert": lambda tmp_path: distilbert_folder(tmp_path, "gelu"),
    "electra": lambda tmp_path: electra_folder(tmp_path, "projected"),
    "mpnet": lambda tmp_path: mpnet_folder(tmp_path, "small"),
    "deberta-v2": lambda tmp_path: deberta_folder(tmp_path, "v3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", FOLDERS)
def test_every_architecture_trains_with_smart_and_is_evaluated_again(architecture, tmp_path, train_tiny,
                                                                      tiny_data_dir):
    """A single-sentence and a pair task, SMART perturbing the embeddings, layer-wise rates, pooling over the
    last two layers; the trained run rebuilt from its folder scores what it scored."""
    from core.build.trained import evaluate_checkpoint

    folder = FOLDERS[architecture](tmp_path)
    run = train_tiny("sst", "sts", checkpoint=str(folder), plugins=("smart",), pooling="cls-mean-2", layer_decay=0.9)
    assert set(run.best) >= {"sst", "sts"} and all(torch.isfinite(torch.tensor(v)) for v in run.best.values())
    again = evaluate_checkpoint(run.folder, data_dir=str(tiny_data_dir))
    assert again["sst"] == pytest.approx(run.best["sst"], abs=1e-6)


def test_pooler_pooling_is_refused_for_an_architecture_without_a_pooler(tmp_path, train_tiny):
    from core.base.errors import ConfigError

    folder = FOLDERS["distilbert"](tmp_path)
    with pytest.raises(ConfigError, match="--pooling pooler: a distilbert checkpoint .* has no pooler"):
        train_tiny("sst", checkpoint=str(folder), pooling="pooler")


def test_masked_language_pretraining_refuses_other_architectures(tmp_path):
    from core.base.errors import ConfigError
    from core.build.pretrain import prepare
    from core.pretrain.config import PretrainConfig

    folder = FOLDERS["roberta"](tmp_path)
    with pytest.raises(ConfigError, match="BERT checkpoints only .* this one is roberta"):
        prepare(PretrainConfig(checkpoint=str(folder), output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_an_unknown_model_type_names_the_installed_architectures(tmp_path):
    from core.base.errors import CheckpointError

    folder = FOLDERS["distilbert"](tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "xlnet"}))
    with pytest.raises(CheckpointError, match="model_type 'xlnet' is not an architecture .*distilbert.*roberta"):
        Parts(plugins=(), checkpoint=str(folder)).source


def test_a_byte_level_vocabulary_without_its_merges_is_refused(tmp_path):
    from core.base.errors import CheckpointError

    folder = FOLDERS["roberta"](tmp_path)
    (folder / "merges.txt").unlink()
    with pytest.raises(CheckpointError, match="vocab.json but no merges.txt"):
        Parts(plugins=(), checkpoint=str(folder)).source


def test_max_length_counts_the_positions_before_the_first_token(tmp_path, train_tiny):
    """RoBERTa's 40 position rows hold 38 tokens: the padding id and the one before the first token take two."""
    from core.base.errors import CheckpointError

    folder = FOLDERS["roberta"](tmp_path)
    with pytest.raises(CheckpointError, match="--max-length 39: .* position embeddings for 38 tokens"):
        train_tiny("sst", checkpoint=str(folder), max_length=39)
