"""Process-wide tuning that a long-running scheduler process applies at start.

CPython's cyclic garbage collector runs a collection every 700 new container objects by
default. A scheduler keeps hundreds of thousands of long-lived objects (orders, tasks, the
event history) and creates a few dozen per order, so the default spends about a quarter of
the CPU re-scanning the same live objects (measured: 25k -> 33k tasks/s in memory, see
benchmarks/README.md). A larger first threshold makes collections rarer; reference counting
still frees everything that is not in a cycle at once.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> tuple[int, int, int]:
    """Apply GC_THRESHOLDS; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    return previous
