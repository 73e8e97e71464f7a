"""``python -m model.atlas --model DIR --data FILE --db FILE.duckdb``: see model.atlas.cli."""

import sys

from .cli import main

sys.exit(main())
