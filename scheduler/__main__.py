"""`python -m scheduler ...` is the `orderflow` command (for environments without the script)."""

import sys

from .cli import main

sys.exit(main())
