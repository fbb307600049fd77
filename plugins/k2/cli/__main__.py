"""``python -m k2.cli``: how K2 starts its own commands as processes."""

import sys

from k2.cli import main

sys.exit(main())
