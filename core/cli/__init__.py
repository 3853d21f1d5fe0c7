"""The ``platform`` command line. :func:`entry` is the console script: it loads the command's modules (torch
takes seconds to import) inside the same Ctrl-C handling the commands have, so that an interrupt at start-up
is one line too."""

from __future__ import annotations

import sys


def entry() -> None:
    try:
        from core.cli.main import main
    except KeyboardInterrupt:
        print("interrupted; nothing was changed", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(main())
