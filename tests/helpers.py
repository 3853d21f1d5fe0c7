"""Helpers shared by tests: bind task specs as a run does, crash a run for real in a subprocess or stop one in
process (:class:`InterruptAt`), install a plugin package outside the repository and run the platform beside it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.api import hookimpl

KILL_SCRIPT = Path(__file__).with_name("kill_run.py")


def kill_run(config, tmp_path: Path, *where) -> subprocess.CompletedProcess:
    """Train ``config`` in a subprocess that is SIGKILLed at ``where`` (see tests/kill_run.py)."""
    config_file = tmp_path / f"kill-{'-'.join(map(str, where))}.json"
    config.save(config_file)
    root = str(Path(__file__).parents[1])
    result = subprocess.run([sys.executable, str(KILL_SCRIPT), str(config_file), *map(str, where)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


def kill_run_at_step(config, step: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """Train ``config`` in a subprocess that is SIGKILLed right after global step ``step``."""
    return kill_run(config, tmp_path, "step", step)


def bind_tasks(*specs):
    """Task specs bound to the registered kinds and metrics of a fresh plugin manager, by name."""
    from core.plugin.manager import make_plugin_manager
    from core.plugin.registries import Registries

    registries = Registries(make_plugin_manager(enabled=None))
    return {spec.name: registries.bind(spec) for spec in specs}


def counting_tokenizer(tokenizer):
    """A tokenizer like ``tokenizer`` whose ``calls`` counts its ``encode`` calls: whether a load tokenized
    or the token cache answered."""

    class CountingTokenizer(type(tokenizer)):
        calls = 0

        def encode(self, texts, max_length):
            self.calls += 1
            return super().encode(texts, max_length)

    return CountingTokenizer(tokenizer.vocab_path, lowercase=True)


def pip_install_outside(package: Path, target: Path, distribution: str) -> Path:
    """``pip install --target target package`` (no dependencies), as a user installs a plugin outside the
    repository; checks that ``distribution``'s metadata landed there."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package)], check=True, capture_output=True, timeout=300)
    assert list(target.glob(f"{distribution}-*.dist-info"))
    return target


def platform_beside(args: list[str], site: Path, **env: str) -> subprocess.CompletedProcess:
    """The ``platform`` command in a subprocess that sees the packages installed in ``site``."""
    pythonpath = os.pathsep.join([str(site), str(Path(__file__).parents[1])])
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": pythonpath, **env})


class Interrupted(Exception):
    """Raised by :class:`InterruptAt`: a run stopped in the middle, without killing a process."""


class InterruptAt:
    """A plugin that stops training right after global step ``step``, before that step's checkpoint: register
    it on a run's plugin manager, then resume the run's folder to check that it ends where an uninterrupted run
    ends."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def platform_on_after_step(self, step: int) -> None:
        if step == self.step:
            raise Interrupted(step)
