"""What a plugin's tests need from the platform: tiny synthetic task files (``data/``, written by
:mod:`core.testing.tiny_data`) and pytest fixtures that train a task on them with the tiny random-init
encoder (:mod:`core.testing.fixtures`, a pytest plugin the distribution installs)."""

from pathlib import Path

TINY_DATA_DIR = Path(__file__).with_name("data")  # the tiny files, named as the CS224N release's
