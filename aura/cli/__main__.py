"""``python -m aura.cli``: the ``aura`` command."""

import sys

from aura.cli import main

sys.exit(main())
