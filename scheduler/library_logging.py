"""A library prints nothing unless its application configures logging.

Without a handler on the `orderflow` logger, every retry and worker death would reach stderr
through logging's last-resort handler. The packages that log (runtime, journal, remote)
import this module; the package root does not, because `logging` loads `threading` and the
pure engine must load neither.
"""

from __future__ import annotations

import logging

_ROOT = logging.getLogger("orderflow")
if not any(isinstance(handler, logging.NullHandler) for handler in _ROOT.handlers):
    _ROOT.addHandler(logging.NullHandler())
