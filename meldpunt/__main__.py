"""``python -m meldpunt`` is the same as the ``meldpunt`` command."""

import sys

from meldpunt.cli import main

sys.exit(main())
