"""``python -m gisgrid``."""

import sys

from gisgrid.cli import main

sys.exit(main())
