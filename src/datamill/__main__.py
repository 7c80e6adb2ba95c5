"""`python -m datamill ...`: the `datamill` command."""

import sys

from .cli import main

sys.exit(main())
