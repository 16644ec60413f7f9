"""Event subscribers on threads of their own, behind bounded queues.

`offer` never blocks: when a subscriber falls behind and its queue is full, the batch is
dropped and counted, and the subscriber is told through `dropped` so it can resynchronise
(the dashboard sends a fresh snapshot). The scheduler never waits for a subscriber.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("orderflow.subscribers")
_CLOSE: list[dict] = []  # sentinel (identity-compared)


class Subscription:
    def __init__(self, callback: Callable[[list[dict]], None], maxsize: int, name: str):
        self._callback = callback
        self._queue: queue.Queue[list[dict]] = queue.Queue(maxsize)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"orderflow-{name}", daemon=True)
        self.name = name
        self.dropped = 0  # event batches lost because the subscriber was too slow

    def start(self) -> None:
        self._thread.start()

    def offer(self, events: list[dict]) -> None:
        try:
            self._queue.put_nowait(events)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while not self._closed.is_set():
            batch = self._queue.get()
            if batch is _CLOSE:
                return
            # Hand over everything that is waiting in one call: fewer, larger batches.
            closing = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _CLOSE:
                    closing = True
                    break
                batch = batch + more
            try:
                self._callback(batch)
            except Exception:  # noqa: BLE001 - a broken subscriber must not take others down
                log.exception("subscriber %s failed on %d event(s)", self.name, len(batch))
            if closing:
                return

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        # The sentinel wakes the thread at once; it bypasses the bound so it is never dropped.
        with self._queue.mutex:
            self._queue.queue.append(_CLOSE)
            self._queue.not_empty.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
