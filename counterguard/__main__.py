"""``python -m counterguard`` is the ``counterguard`` command."""

import sys

from counterguard.cli import main

sys.exit(main())
