"""``python -m core.cli``: the ``platform`` command (as torchrun launches it: ``torchrun ... -m core.cli run``)."""

import sys

from core.cli.main import main

sys.exit(main())
