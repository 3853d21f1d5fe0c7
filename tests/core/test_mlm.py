"""core.mlm: the MLM head tied to the word embeddings, saved and loaded in the BERT checkpoint layout."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from core.base.errors import CheckpointError
from core.encoder.bert import BertConfig, BertModel
from core.encoder.loading import load_encoder
from core.encoder.mlm import IGNORED, TIED, MaskedLM, load_masked_lm

SMALL = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                   max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = MaskedLM(BertModel(SMALL))
    with torch.no_grad():  # a head that is not at its init, so round trips prove something
        for p in model.cls.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def batch(seed=0, B=3, T=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (B, T), generator=g)  # ids below 100 only: rows 100.. are never inputs
    labels = torch.full((B, T), IGNORED)
    labels[:, 2::4] = ids[:, 2::4]
    return ids, torch.ones(B, T, dtype=torch.long), labels


def write_folder(model, folder, config=SMALL):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**config.to_dict(), "model_type": "bert", "hidden_act": "gelu",
                                                     "architectures": ["BertForMaskedLM"]}))
    (folder / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(config.vocab_size)) + "\n")
    model.save_weights(folder / "model.safetensors")
    return folder


def test_decoder_weight_is_the_word_embedding_table(model):
    decoder = model.cls.predictions.decoder.weight
    assert decoder is model.bert.embeddings.word_embeddings.weight
    names = [name for name, _ in model.named_parameters()]
    assert "cls.predictions.decoder.weight" not in names  # one parameter, listed once (under the encoder)
    transform = model.cls.predictions.transform
    assert sum(p.numel() for p in model.parameters()) == (
        sum(p.numel() for p in model.bert.parameters()) + sum(p.numel() for p in transform.parameters())
        + SMALL.vocab_size)


def test_the_tied_table_learns_from_both_ends(model):
    ids, mask, labels = batch()
    logits, targets = model(ids, mask, labels)
    assert logits.shape == (len(targets), SMALL.vocab_size) and len(targets) == (labels != IGNORED).sum()
    F.cross_entropy(logits, targets).backward()
    grad = model.bert.embeddings.word_embeddings.weight.grad
    # rows 100.. never appear as inputs: their gradient can only come through the decoder
    assert grad[100:].abs().sum() > 0
    assert grad[5:100].abs().sum() > 0


def test_logits_match_transformers_bert_for_masked_lm(model, tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = write_folder(model, tmp_path / "ckpt")
    theirs = transformers.BertForMaskedLM.from_pretrained(folder).eval()
    model.eval()
    ids, mask, labels = batch(1)
    with torch.no_grad():
        ours, _ = model(ids, mask, labels)
        reference = theirs(input_ids=ids, attention_mask=mask).logits[labels != IGNORED]
    assert (ours - reference).abs().max().item() < 1e-5
    assert theirs.cls.predictions.decoder.weight.data_ptr() == theirs.bert.embeddings.word_embeddings.weight.data_ptr()


def test_saved_weights_are_the_bert_layout_without_the_tied_copy(model, tmp_path):
    folder = write_folder(model, tmp_path / "ckpt")
    keys = set(safetensors.torch.load_file(folder / "model.safetensors"))
    assert TIED not in keys
    assert {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
            "cls.predictions.transform.LayerNorm.weight", "bert.embeddings.word_embeddings.weight"} <= keys
    assert {k.removeprefix("bert.") for k in keys if k.startswith("bert.")} == set(model.bert.state_dict())


def test_head_loads_from_a_checkpoint_that_has_one(model, tmp_path):
    folder = write_folder(model, tmp_path / "ckpt")
    loaded, from_checkpoint = load_masked_lm(str(folder), seed=3)
    assert from_checkpoint
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight


def test_encoder_loader_ignores_the_head(model, tmp_path):
    folder = write_folder(model, tmp_path / "ckpt")
    encoder = load_encoder(str(folder))
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], tensor), name


def test_head_is_initialised_when_the_checkpoint_has_none(model, tmp_path):
    folder = tmp_path / "encoder-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**SMALL.to_dict(), "hidden_act": "gelu"}))
    (folder / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(SMALL.vocab_size)) + "\n")
    safetensors.torch.save_file(model.bert.state_dict(), folder / "model.safetensors")
    loaded, from_checkpoint = load_masked_lm(str(folder), seed=3)
    assert not from_checkpoint
    transform = loaded.cls.predictions.transform
    assert torch.equal(transform.LayerNorm.weight, torch.ones(SMALL.hidden_size))
    assert not transform.dense.bias.any() and not loaded.cls.predictions.bias.any()
    assert transform.dense.weight.std().item() == pytest.approx(0.02, rel=0.15)
    again, _ = load_masked_lm(str(folder), seed=3)
    assert torch.equal(again.cls.predictions.transform.dense.weight, transform.dense.weight)  # seeded


def test_transformers_bias_alias_is_accepted(model, tmp_path):
    folder = write_folder(model, tmp_path / "ckpt")
    state = safetensors.torch.load_file(folder / "model.safetensors")
    state["cls.predictions.decoder.bias"] = state.pop("cls.predictions.bias")
    state[TIED] = state["bert.embeddings.word_embeddings.weight"].clone()  # older files hold the tied copy
    state["cls.seq_relationship.weight"] = torch.zeros(2, SMALL.hidden_size)  # a next-sentence head is ignored
    safetensors.torch.save_file(state, folder / "model.safetensors")
    loaded, from_checkpoint = load_masked_lm(str(folder))
    assert from_checkpoint and torch.equal(loaded.cls.predictions.bias, model.cls.predictions.bias)


def test_an_incomplete_head_is_named(model, tmp_path):
    folder = write_folder(model, tmp_path / "ckpt")
    state = safetensors.torch.load_file(folder / "model.safetensors")
    del state["cls.predictions.transform.LayerNorm.bias"]
    safetensors.torch.save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="incomplete MLM head: missing cls.predictions.transform.LayerNorm.bias"):
        load_masked_lm(str(folder))
