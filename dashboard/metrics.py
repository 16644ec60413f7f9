"""`GET /metrics`: Prometheus text format, one registry per app (no module globals).

Counts and gauges are read from `cluster.stats()` when scraped, so they can never drift from
the API. Histograms need every event, so they come from a cluster subscription, which runs
on its own thread behind a bounded queue and cannot slow the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scheduler import Cluster, OrderStatus, TaskState
from scheduler.engine.states import OrderStage

from .door.gate import SocketKind
from .parts import Part
from .stream.push import EventStream

WORKER_STATUSES = ("alive", "suspect", "draining", "dead", "removed")
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ORDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# The events that end an attempt, by the outcome they count as.
_OUTCOMES = {"task_succeeded": "succeeded", "task_failed": "failed"}

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    registry = current_app.extensions["orderflow"].metrics.registry
    # content_type, not mimetype: the latter would append a second "; charset=utf-8".
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _labelled_gauge(name: str, doc: str, label: str, values: dict[str, int],
                    keys: tuple[str, ...]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key in keys:
        family.add_metric([key], values.get(key, 0))
    return family


def _schedule_metrics(schedules: list[dict]) -> Iterator[Metric]:
    """Each recurring schedule's runs (journaled, so they survive restarts), the time it last
    fired for and the next (alert on a last run older than its period)."""
    runs = CounterMetricFamily("orderflow_schedule_runs",
                               "Times each recurring schedule fired (kept across restarts)",
                               labels=["schedule"])
    last = GaugeMetricFamily("orderflow_schedule_last_run_timestamp_seconds",
                             "Unix time of the scheduled time each schedule last fired for "
                             "(0: never)", labels=["schedule"])
    following = GaugeMetricFamily("orderflow_schedule_next_run_timestamp_seconds",
                                  "Unix time each schedule fires next (0: never again)",
                                  labels=["schedule"])
    for view in schedules:
        name = [view["name"]]
        runs.add_metric(name, view["runs"])
        last.add_metric(name, 0 if view["last_run"] is None else view["last_run"]["at"])
        following.add_metric(name, view["next"] or 0)
    yield from (runs, last, following)


class ClusterCollector:
    """Reads the cluster's and the stream's counters at scrape time."""

    def __init__(self, cluster: Cluster, stream: EventStream):
        self.cluster, self.stream = cluster, stream

    def collect(self) -> Iterator[Metric]:
        stats = self.cluster.stats()
        yield _labelled_gauge("orderflow_orders", "Orders by status (finished ones since start)",
                              "status", stats["orders"], tuple(s.value for s in OrderStatus))
        yield _labelled_gauge("orderflow_tasks", "Tasks by state", "state", stats["tasks"],
                              tuple(s.value for s in TaskState))
        # The dashboard's tiles and filters: the same numbers, the same rule (OrderStage).
        yield _labelled_gauge("orderflow_orders_by_stage",
                              "Orders by stage: unfinished ones queued, running or retrying; "
                              "finished ones since start", "stage", stats["progress"],
                              tuple(s.value for s in OrderStage))
        steps = GaugeMetricFamily("orderflow_unfinished_steps",
                                  "Tasks of unfinished orders by step and state",
                                  labels=["step", "state"])
        for step, states in sorted(stats["steps"].items()):
            for state, count in states.items():
                steps.add_metric([step, state], count)
        yield steps
        rates = stats["rates"]
        for name, key, doc in (
            ("orderflow_orders_per_second", "orders_per_s", "Orders completed"),
            ("orderflow_steps_per_second", "steps_per_s", "Steps succeeded"),
            ("orderflow_failed_attempts_per_second", "failures_per_s", "Attempts failed"),
        ):
            yield GaugeMetricFamily(name, f"{doc} per second over the last {rates['window']} s",
                                    value=rates[key])
        yield _labelled_gauge("orderflow_workers", "Workers by status", "status", stats["workers"],
                              WORKER_STATUSES)
        yield _labelled_gauge("orderflow_slots", "Slots of the live workers (abandoned: threads "
                              "left to hung handlers, each replaced)", "use",
                              stats["slots"], ("total", "busy", "stuck", "abandoned"))
        limits = GaugeMetricFamily("orderflow_held_by_limits",
                                   "Ready tasks their step's limits hold back", labels=["step"])
        for step, count in sorted(stats["held_by_limits"].items()):
            limits.add_metric([step], count)
        yield limits
        paused = GaugeMetricFamily("orderflow_step_paused",
                                   "Paused steps (1 each): their ready tasks wait until resumed; "
                                   "by: operator or breaker", labels=["step", "by"])
        for step, pause in sorted(stats["paused"].items()):
            paused.add_metric([step, "breaker" if pause["by_breaker"] else "operator"], 1)
        yield paused
        unroutable = GaugeMetricFamily("orderflow_unroutable",
                                       "Ready tasks no live worker can run", labels=["step"])
        for step, count in sorted(stats["unroutable"].items()):
            unroutable.add_metric([step], count)
        yield unroutable
        # Per workflow definition, the unfinished orders pinned to it (a rolling deploy's
        # old version may go at 0), and those no live worker can run (nobody offers it).
        remaining = GaugeMetricFamily("orderflow_unfinished_orders",
                                      "Unfinished orders by the workflow definition they are "
                                      "pinned to", labels=["workflow", "version"])
        for definition in stats["definitions"]:
            remaining.add_metric([definition["workflow"], definition["version"]],
                                 definition["unfinished"])
        yield remaining
        stranded = GaugeMetricFamily("orderflow_stranded_orders",
                                     "Unfinished orders of a workflow definition the app "
                                     "lacks and no live worker offers", labels=["definition"])
        for key, count in sorted(stats["stranded"].items()):
            stranded.add_metric([key], count)
        yield stranded
        alerts = GaugeMetricFamily("orderflow_alerts", "Active alerts (1 each; docs/alerts.yml)",
                                   labels=["alert", "subject"])
        for alert in stats["alerts"]:
            alerts.add_metric([alert["alert"], alert["subject"]], 1)
        yield alerts
        yield GaugeMetricFamily("orderflow_orders_waiting", "Orders waiting for a signal or a "
                                "time, none of their steps queued or running",
                                value=stats["orders"].get("waiting", 0))
        yield GaugeMetricFamily("orderflow_timers_pending", "Timers set (waits' timeouts, "
                                "delays, not_before)", value=stats["timers_pending"])
        yield GaugeMetricFamily("orderflow_journal_stalled_seconds",
                                "Seconds the journal has failed to commit (0 while it commits)",
                                value=stats["journal_stalled"])
        yield CounterMetricFamily("orderflow_orders_submitted", "Orders accepted",
                                  value=stats["orders_total"])
        yield CounterMetricFamily("orderflow_task_retries", "Failed attempts that were retried",
                                  value=stats["retries"])
        yield CounterMetricFamily("orderflow_task_reassignments",
                                  "Tasks held by a worker that died (poisoned ones included)",
                                  value=stats["reassignments"])
        moves = CounterMetricFamily("orderflow_task_moves",
                                    "Tasks taken off a worker that died or drained and put "
                                    "back in line", labels=["reason"])
        for reason, count in sorted(stats["moves_by_reason"].items()):
            moves.add_metric([reason], count)
        yield moves
        yield CounterMetricFamily("orderflow_abandoned_threads",
                                  "Threads abandoned to handlers that ignored their "
                                  "cancellation (each replaced by a new one)",
                                  value=stats["abandoned_threads"])
        yield CounterMetricFamily("orderflow_workers_hung",
                                  "Thread workers declared dead for more threads abandoned "
                                  "to hung handlers than they may have",
                                  value=stats["workers_hung"])
        yield CounterMetricFamily("orderflow_timed_out_attempts",
                                  "Attempts that ran past their step's time limit (each a "
                                  "failed attempt)", value=stats["timed_out_attempts"])
        yield from _schedule_metrics(self.cluster.schedules())
        yield CounterMetricFamily("orderflow_rejected_results",
                                  "Late results refused by lease fencing",
                                  value=stats["rejected_results"])
        yield GaugeMetricFamily("orderflow_throughput_orders_per_second",
                                "Orders completed per second over the last minute",
                                value=stats["throughput"])
        yield GaugeMetricFamily("orderflow_last_event_seq", "Seq of the newest event",
                                value=stats["last_seq"])
        yield _labelled_gauge("orderflow_stream_clients", "Socket.IO clients by stream state",
                              "state", self.stream.clients.counts(), ("live", "resyncing"))
        yield CounterMetricFamily("orderflow_stream_snapshots", "Snapshots sent to clients",
                                  value=self.stream.counters["snapshots"])
        yield CounterMetricFamily("orderflow_stream_clients_fell_behind",
                                  "Times a client fell behind and was switched to a snapshot",
                                  value=self.stream.clients.fell_behind)


class ConnectionCollector:
    """What the Socket.IO door did: open connections by kind (gate.py), heartbeats dropped,
    frames held back and connections cut by the frame limits (frames.py)."""

    def __init__(self, gate: Any, frame_stats: Any):
        self.gate, self.frame_stats = gate, frame_stats

    def collect(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily("orderflow_socket_connections",
                                     "Socket.IO connections open, by kind", labels=["kind"])
        for kind in SocketKind:
            open_now.add_metric([kind.value], self.gate.open_connections(kind))
        yield open_now
        counts = self.frame_stats.view()
        for name, key, doc in (
            ("orderflow_socket_heartbeats_dropped", "heartbeats_dropped",
             "Heartbeats dropped: more than four per heartbeat interval on a connection"),
            ("orderflow_socket_frames_delayed", "frames_delayed",
             "Frames that waited for their turn under a connection's frame rate"),
            ("orderflow_socket_connections_cut", "connections_cut",
             "Connections cut for going far past their frame limits"),
        ):
            yield CounterMetricFamily(name, doc, value=counts[key])


class Metrics(Part):
    """The app's registry, and the histograms fed by a cluster subscription."""

    def __init__(self, cluster: Cluster, stream: EventStream):
        self.cluster = cluster
        self.registry = CollectorRegistry()
        self._collector = ClusterCollector(cluster, stream)
        self.registry.register(self._collector)
        self.task_seconds = Histogram(
            "orderflow_task_run_seconds", "Run time of successful task attempts", ["step"],
            buckets=TASK_BUCKETS, registry=self.registry)
        self.order_seconds = Histogram(
            "orderflow_order_completion_seconds", "Time from submission to completion",
            buckets=ORDER_BUCKETS, registry=self.registry)
        self.events = Counter("orderflow_events", "Scheduler events by type", ["type"],
                              registry=self.registry)
        # By step, what the failure-spike rule of docs/alerts.yml divides.
        self.attempts = Counter("orderflow_step_attempts", "Attempts that ended, by step and "
                                "outcome", ["step", "outcome"], registry=self.registry)
        self._subscription = None

    def start(self) -> None:
        if self._subscription is None:
            self._subscription = self.cluster.subscribe(self.observe, maxsize=1000, name="metrics")

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()

    def follow(self, cluster: Cluster) -> None:
        """A new leadership term: gauges and histograms come from `cluster` from now on."""
        old, self._subscription = self._subscription, None
        if old is not None:
            self.cluster.unsubscribe(old)
        self.cluster = self._collector.cluster = cluster
        if old is not None:
            self.start()

    def observe(self, events: list[dict]) -> None:
        """Count a batch of events. prometheus_client's `labels()` takes a lock and builds
        its key at each call (about 8 % of the server's CPU under remote workers when it
        was called per event), so each series is looked up once per batch."""
        kinds: dict[str, int] = {}
        attempts: dict[tuple[str, str], int] = {}
        runs: dict[str, list[float]] = {}
        completions: list[float] = []
        for event in events:
            kind = event["type"]
            kinds[kind] = kinds.get(kind, 0) + 1
            outcome = _OUTCOMES.get(kind)
            if outcome is not None:
                key = (event["step"], outcome)
                attempts[key] = attempts.get(key, 0) + 1
            duration = event.get("duration")
            if duration is None:
                continue
            if kind == "task_succeeded":
                runs.setdefault(event["step"], []).append(duration)
            elif kind == "order_completed":
                completions.append(duration)
        for kind, count in kinds.items():
            self.events.labels(kind).inc(count)
        for (step, outcome), count in attempts.items():
            self.attempts.labels(step, outcome).inc(count)
        for step, durations in runs.items():
            series = self.task_seconds.labels(step)
            for duration in durations:
                series.observe(duration)
        for duration in completions:
            self.order_seconds.observe(duration)
