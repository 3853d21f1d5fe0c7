"""The platform's errors: one base class for everything reported to a user as one line.

Bad input (an option, a data file, a checkpoint, a run folder, a plugin) raises a subclass of
:class:`PlatformError` whose message names what was wrong, where, and what would be right. The
command line prints those as one line and exits with status 2; anything else (a bug, an error
inside torch) keeps its traceback. Third-party plugins raise ``PlatformError`` (or a subclass) for
their users' mistakes, so they get the same treatment.
"""

from __future__ import annotations


class PlatformError(ValueError):
    """Bad input, reported as one line naming the option, file, line or plugin at fault."""


class ConfigError(PlatformError):
    """Options that are unknown, out of range, or do not work together."""


class CheckpointError(PlatformError):
    """A pretrained checkpoint cannot be found, read, or does not fit the encoder its config describes."""
