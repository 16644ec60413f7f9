"""The app's moving parts (dashboard/parts.py, app.py's Services): registered by create_app,
started once the cluster runs, stopped in the reverse order before it, each following a new
leadership term's cluster; the retention job gives each term's journal a pruner of its own."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from dashboard import create_app, services
from dashboard.app import Retention
from dashboard.metrics import Metrics
from dashboard.parts import Part
from dashboard.settings import ServeSettings
from dashboard.stream.push import EventStream
from dashboard.workers.hub import WorkerHub, hub_of


class Recorder(Part):
    """A part that writes down what was asked of it."""

    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    def start(self) -> None:
        self.calls.append(("start", self.name))

    def stop(self) -> None:
        self.calls.append(("stop", self.name))

    def follow(self, cluster) -> None:
        self.calls.append(("follow", self.name, cluster))


def test_create_app_registers_the_stream_metrics_retention_and_the_worker_hub():
    app = create_app()
    running = services(app)
    assert [type(part) for part in running.parts] == [EventStream, Metrics, Retention, WorkerHub]
    assert running.parts[:2] == [running.stream, running.metrics]
    assert running.workers is hub_of(app) is running.parts[-1]


def test_parts_start_in_order_after_the_cluster_and_stop_in_reverse_before_it():
    app = create_app()
    running = services(app)
    calls: list = []
    running.parts.insert(0, Recorder("first", calls))
    running.add(Recorder("last", calls))
    running.start()
    try:
        assert calls == [("start", "first"), ("start", "last")]
        assert running.stream._thread.is_alive()  # the real parts between them run too
        running.follow(running.cluster)
        assert calls[2:] == [("follow", "first", running.cluster),
                             ("follow", "last", running.cluster)]
    finally:
        running.stop()
    assert calls[4:] == [("stop", "last"), ("stop", "first")]
    assert not running.stream._thread.is_alive()


def test_a_part_must_say_how_it_stops():
    class Half(Part):
        def start(self) -> None:
            pass

    with pytest.raises(TypeError, match="stop"):
        Half()


def pruners() -> int:
    return sum(t.name == "orderflow-pruner" for t in threading.enumerate())


def term(pruned: list) -> SimpleNamespace:
    """A term's cluster, as far as retention sees it: a persistent journal that can prune."""
    journal = SimpleNamespace(persistent=True,
                              prune=lambda before: pruned.append(before) or {"orders": 0})
    return SimpleNamespace(journal=journal)


def test_retention_gives_each_terms_journal_a_pruner_and_a_standby_none():
    retention = Retention(ServeSettings(retention=3600.0), None)  # standing by at start
    assert retention.pruner is None
    first, second = [], []
    retention.follow(term(first))
    try:
        assert pruners() == 1
        retention.pruner.prune_once()
        assert len(first) == 1 and not second
        retention.follow(term(second))  # the next term: the first one's pruner stops
        assert pruners() == 1
        retention.pruner.prune_once()
        assert len(first) == 1 and len(second) == 1
        retention.follow(SimpleNamespace(journal=SimpleNamespace(persistent=False)))
        assert retention.pruner is None and pruners() == 0
    finally:
        retention.stop()
