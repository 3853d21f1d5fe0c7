"""Shared fixtures: a private cache folder per test session, the CS224N data folder, small run configs.

The tiny synthetic task files (``tiny_data_dir``) and ``tiny_run_config`` / ``train_tiny`` come from the
platform's own pytest plugin, ``core/testing/fixtures.py``, which plugin authors use too. A test that takes
``data_dir`` (the real CS224N files) is marked ``data`` here, so ``-m "not data"`` leaves it out.
"""

from __future__ import annotations

import os

import pytest

from core.data.folders import resolve_data_dir
from core.data.tables import DataError


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Tokenization caches go to a fresh folder, so tests never see a stale cache."""
    path = tmp_path_factory.mktemp("platform-cache")
    old = os.environ.get("PLATFORM_CACHE_DIR")
    os.environ["PLATFORM_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PLATFORM_CACHE_DIR", None)
    else:
        os.environ["PLATFORM_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: one intra-op thread is fastest, and far faster on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items):
    for item in items:
        if "data_dir" in item.fixturenames:
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def data_dir():
    """The CS224N data folder (``$PLATFORM_DATA_DIR``, else ``../shared/data/cs224n``). Without it the tests
    that read the data are skipped; under CI (``CI=true``) they fail, so a suite without data cannot pass."""
    try:
        return resolve_data_dir()
    except DataError as error:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CS224N data not available under CI=true, where tests that read it must run: {error}",
                        pytrace=False)
        pytest.skip(f"CS224N data not available: {error}")


@pytest.fixture
def tiny_config(tmp_path, tiny_data_dir):
    """A quick multitask run on the tiny synthetic files: tiny random-init encoder, 24 examples per task
    and split, on the CPU in float32 (tests compare runs exactly and feed batches by hand;
    tests/core/test_devices.py covers bf16, tests/core/test_cuda.py the GPU)."""
    from core.experiment.config import RunConfig

    return RunConfig(tasks=("sst", "cfimdb", "quora", "sts"), checkpoint="tiny", limit=24, batch_size=8,
                     eval_batch_size=16, max_length=32, epochs=2, lr=1e-3, sampler="rrobin", save_every=2,
                     log_every=1, data_dir=str(tiny_data_dir), output_dir=str(tmp_path / "run"), threads=1,
                     device="cpu", precision="fp32")
