"""Run as a separate process by the crash tests: a persisted cluster that can be SIGKILLed.

python crash_harness.py DB bulk N      submit N orders in one durable batch, print "ACK <ids>",
                                       then keep working until killed
python crash_harness.py DB each N      submit N orders one by one, printing "ACK <id>" after each
"""

from __future__ import annotations

import sys
import threading

from scheduler import Cluster, TaskContext
from scheduler.store import SQLiteJournal


def slow(ctx: TaskContext):
    ctx.sleep(0.002)
    return {"step": ctx.step, "attempt": ctx.attempt}


def main() -> None:
    db, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    handlers = {s: slow for s in ("payment", "packing", "shipping")}
    cluster = Cluster(
        workers=4,
        heartbeat_interval=0.05,
        heartbeat_timeout=0.5,
        journal=SQLiteJournal(db),
        handlers=handlers,
    ).start()
    order = {"customer": "crash", "items": [{"sku": "X", "qty": 1, "price": 1.0}]}
    if mode == "bulk":
        ids = cluster.submit_many([order] * count)
        print("ACK", " ".join(ids), flush=True)
    else:
        for _ in range(count):
            print("ACK", cluster.submit(order), flush=True)
    threading.Event().wait()  # work on until SIGKILL


if __name__ == "__main__":
    main()
