"""Retention: forget finished orders older than a cutoff, so the database stays bounded."""

from __future__ import annotations

import argparse
import logging
import re
import threading
import time
from typing import Protocol

log = logging.getLogger("orderflow.retention")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' -> seconds; raises ValueError with the accepted forms."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(
            f"invalid duration {text!r}: use a positive number with s, m, h, d or w "
            "(for example 7d)"
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def duration_arg(text: str) -> float:
    """`parse_duration` for argparse, which shows the message of an ArgumentTypeError."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Prunable(Protocol):
    """A journal that can forget finished orders (SQLite's and PostgreSQL's)."""

    def prune(self, before_wall: float) -> dict: ...


class Pruner:
    """Prunes the journal every `every` seconds on a thread of its own (`--retention`)."""

    def __init__(
        self, journal: Prunable, older_than: float, every: float = 3600.0, clock=time.time
    ):
        self._journal, self._older_than, self._every, self._clock = (
            journal,
            older_than,
            every,
            clock,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderflow-pruner", daemon=True)

    def start(self) -> Pruner:
        self._thread.start()
        return self

    def prune_once(self) -> dict:
        removed = self._journal.prune(self._clock() - self._older_than)
        if removed["orders"]:
            log.info(
                "retention: removed %d finished orders and %d events older than %.0fs",
                removed["orders"],
                removed["events"],
                self._older_than,
            )
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.prune_once()
            except Exception:  # noqa: BLE001 - a failed prune is retried next period
                log.exception("retention: pruning failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
