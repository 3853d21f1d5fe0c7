"""``python -m core.cli``: the ``platform`` command (as torchrun launches it: ``torchrun ... -m core.cli run``)."""

from core.cli import entry

entry()
