"""The event stream's decisions, driven by hand: a fake Socket.IO, a fake clock, no threads."""

from __future__ import annotations

from web import ORDER, fast_cluster

from dashboard.api.bodies import MAX_PAGE
from dashboard.config import DefaultConfig
from dashboard.stream.push import ClientTable, EventStream, StreamSettings, build_snapshot
from scheduler import App, Cluster

SNAPSHOT_KEYS = {"stats", "workers", "ring", "orders", "events", "last_seq", "chaos", "config",
                 "limits", "workflows", "workflow_details", "server", "app", "incidents"}


class Recorder:
    """Stands in for flask_socketio.SocketIO: remembers every emit."""

    def __init__(self):
        self.sent: list[tuple[str, object, list[str]]] = []

    def emit(self, event, data, to=None, namespace=None):
        assert to, "an emit without recipients would broadcast to every client"
        self.sent.append((event, data, list(to)))

    def take(self, event: str) -> list[tuple[object, list[str]]]:
        found = [(data, to) for name, data, to in self.sent if name == event]
        self.sent = [s for s in self.sent if s[0] != event]
        return found


class IdleExecutor:
    """A worker that runs nothing and starts no thread: it only sits on the ring."""

    kind, slots, steps, tags = "thread", 1, None, frozenset()

    def start(self): ...
    def deliver(self, dispatch): ...
    def cancel(self, dispatch): ...
    def stop(self): ...
    def kill(self): ...


def make_stream(cluster, backlogs=None, **settings):
    backlogs = {} if backlogs is None else backlogs
    recorder = Recorder()
    stream = EventStream(cluster, recorder, StreamSettings(**settings),
                         backlog=lambda sid: backlogs.get(sid, 0))
    return stream, recorder, backlogs


def test_new_client_gets_a_snapshot_then_only_newer_events():
    cluster = fast_cluster()  # never started: events come only from what the test does
    stream, sio, _ = make_stream(cluster)
    cluster.submit(ORDER)
    stream.connect("a")
    stream.step(0.0)
    [(snapshot, to)] = sio.take("snapshot")
    assert to == ["a"] and set(snapshot) == SNAPSHOT_KEYS
    assert snapshot["last_seq"] == snapshot["events"][-1]["seq"] == cluster.stats()["last_seq"]
    assert snapshot["config"] == {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.3,
                                  "max_retries": 3, "workers_interval": 0.5}
    assert sio.take("events") == []  # what it missed is in the snapshot
    cluster.submit(ORDER)
    cluster.submit(ORDER)
    stream.step(0.1)
    [(batch, to)] = sio.take("events")
    assert to == ["a"]
    assert [e["seq"] for e in batch] == [snapshot["last_seq"] + 1, snapshot["last_seq"] + 2]


def test_events_are_sent_at_most_once_per_interval_and_in_chunks():
    cluster = fast_cluster()
    stream, sio, _ = make_stream(cluster, chunk=3)
    stream.connect("a")
    stream.step(0.0)
    sio.take("snapshot")
    for _ in range(7):
        cluster.submit(ORDER)
    stream.step(0.05)  # woken early (say, by a connect): too soon for events
    assert sio.take("events") == []
    assert stream.step(0.1) > 0
    batches = [batch for batch, _ in sio.take("events")]
    assert [len(b) for b in batches] == [3, 3, 1]
    seqs = [e["seq"] for b in batches for e in b]
    assert seqs == sorted(seqs) and len(set(seqs)) == 7


def test_client_that_falls_behind_gets_nothing_until_it_drains_then_a_snapshot():
    cluster = fast_cluster()
    stream, sio, backlogs = make_stream(cluster, backlog_limit=5)
    stream.connect("slow")
    stream.connect("fast")
    stream.step(0.0)
    sio.take("snapshot")
    backlogs["slow"] = 6
    cluster.submit(ORDER)
    stream.step(1.0)
    [(_, to)] = sio.take("events")
    assert to == ["fast"]
    assert stream.clients.fell_behind == 1
    assert stream.clients.counts() == {"live": 1, "resyncing": 1}
    backlogs["slow"] = 3  # draining, but not yet caught up
    cluster.submit(ORDER)
    stream.step(2.0)
    assert sio.take("snapshot") == []
    assert [to for _, to in sio.take("events")] == [["fast"]]
    backlogs["slow"] = 0
    cluster.submit(ORDER)
    stream.step(3.0)
    [(snapshot, to)] = sio.take("snapshot")
    assert to == ["slow"] and snapshot["last_seq"] == cluster.stats()["last_seq"]
    assert [to for _, to in sio.take("events")] == [["fast"]]
    cluster.submit(ORDER)
    stream.step(4.0)
    assert [sorted(to) for _, to in sio.take("events")] == [["fast", "slow"]]


def test_client_not_ready_yet_is_skipped_not_dropped():
    cluster = fast_cluster()
    stream, sio, backlogs = make_stream(cluster)
    backlogs["a"] = None  # mid-handshake
    stream.connect("a")
    stream.step(0.0)
    assert sio.sent == []
    backlogs["a"] = 0
    stream.step(0.01)
    assert [to for _, to in sio.take("snapshot")] == [["a"]]


def test_history_moving_past_the_cursor_resyncs_everyone_by_snapshot():
    cluster = fast_cluster(event_history=100)
    stream, sio, _ = make_stream(cluster)
    stream.connect("a")
    stream.step(0.0)
    sio.take("snapshot")
    for _ in range(250):  # one order_submitted each; the history keeps at most 200
        cluster.submit(ORDER)
    stream.step(0.1)
    assert sio.take("events") == []
    [(snapshot, to)] = sio.take("snapshot")
    assert to == ["a"] and snapshot["last_seq"] == 250
    assert stream.counters["resyncs_for_gap"] == 1


def test_a_flood_of_events_is_replaced_by_a_snapshot():
    cluster = fast_cluster()
    stream, sio, _ = make_stream(cluster, max_events=10)
    stream.connect("a")
    stream.step(0.0)
    sio.take("snapshot")
    for _ in range(11):
        cluster.submit(ORDER)
    stream.step(0.1)
    assert sio.take("events") == []
    assert len(sio.take("snapshot")) == 1
    cluster.submit(ORDER)
    stream.step(0.2)
    [(batch, _)] = sio.take("events")
    assert [e["seq"] for e in batch] == [12]


def test_workers_message_goes_out_every_workers_interval_to_live_clients():
    cluster = fast_cluster()
    stream, sio, _ = make_stream(cluster, workers_interval=0.5)
    stream.connect("a")
    for tick in range(11):  # 0.0 .. 1.0 s
        stream.step(tick / 10)
    messages = sio.take("workers")
    # At 0.0 the client is only getting its snapshot; then at 0.5 and 1.0.
    assert len(messages) == 2
    assert set(messages[0][0]) == {"workers", "stats", "chaos"}


def test_disconnected_client_is_forgotten():
    table = ClientTable(backlog_limit=5)
    table.add("a")
    table.remove("a")
    table.resync("a")  # a late resync for a gone client is harmless
    assert table.plan(lambda sid: 0).snapshot == []
    assert table.counts() == {"live": 0, "resyncing": 0}


def test_snapshot_limits_what_it_carries():
    cluster = fast_cluster()
    for _ in range(30):
        cluster.submit(ORDER)
    snapshot = build_snapshot(cluster, StreamSettings(snapshot_orders=10, snapshot_events=5))
    assert len(snapshot["orders"]) == 10 and len(snapshot["events"]) == 5
    assert snapshot["last_seq"] == 30


def test_snapshot_gives_the_browser_the_servers_caps_not_copies_of_them():
    cluster = fast_cluster(finished_order_history=1234)
    settings = StreamSettings.from_config({**vars(DefaultConfig), "DASHBOARD_LOG_EVENTS": 77,
                                           "DASHBOARD_INITIAL_ORDERS": 88})
    snapshot = build_snapshot(cluster, settings)
    assert snapshot["limits"] == {"orders": 1234, "orders_page": MAX_PAGE,
                                  "initial_orders": 88, "log_events": 77, "incidents": 100}


def test_snapshot_names_what_each_step_waits_for_including_fan_out():
    snapshot = build_snapshot(fast_cluster())
    assert snapshot["workflows"]["ecommerce"] == {
        "payment": [], "packing": ["payment"], "shipping": ["packing"]}
    assert snapshot["workflows"]["ecommerce_invoiced"] == {
        "payment": [], "packing": ["payment"], "invoice": ["payment"],
        "shipping": ["packing", "invoice"]}


def test_snapshot_lists_the_workflows_with_their_steps_policies_as_the_api_does():
    cluster = fast_cluster()
    details = build_snapshot(cluster)["workflow_details"]
    assert details == cluster.describe_workflows()
    assert [w["name"] for w in details] == ["ecommerce", "ecommerce_invoiced"]
    invoiced = {s["name"]: s for s in details[1]["steps"]}
    assert invoiced["shipping"]["deps"] == ["packing", "invoice"]
    assert {"timeout", "retries", "max_in_flight", "rate", "tags"} <= set(invoiced["payment"])


def test_the_stream_samples_the_history_whether_or_not_anyone_watches():
    from dashboard.stream.history import History

    cluster = fast_cluster()
    history = History(interval=2.0)
    wall = [1000.0]
    stream = EventStream(cluster, Recorder(), StreamSettings(), backlog=lambda sid: 0,
                         history=history, wall=lambda: wall[0])
    cluster.submit(ORDER)
    for tick in range(10):  # 1000.0 .. 1004.5 s of wall time, nobody connected
        stream.step(tick / 2)
        wall[0] += 0.5
    view = history.view()
    assert view["t"] == [1000.0, 1002.0, 1004.0]
    assert view["queued"] == [1, 1, 1]  # its payment waits: the cluster never started


def test_changed_incidents_go_to_live_clients_before_the_events_that_changed_them():
    cluster = fast_cluster()  # never started: the death is the test's doing
    victim = cluster.join_worker("w-1", IdleExecutor())
    stream, sio, _ = make_stream(cluster)
    stream.connect("a")
    stream.step(0.0)
    [(snapshot, _)] = sio.take("snapshot")
    assert snapshot["incidents"] == []
    cluster.worker_lost(victim, reason="its connection closed")
    stream.step(0.1)
    names = [name for name, _, _ in sio.sent]
    assert names.index("incidents") < names.index("events")
    [(incidents, to)] = sio.take("incidents")
    assert to == ["a"] and [(i["kind"], i["worker"]) for i in incidents] == [
        ("worker_dead", victim)]
    [(batch, _)] = sio.take("events")
    assert incidents[0]["id"] in {e["seq"] for e in batch if e["type"] == "worker_dead"}
    stream.step(0.2)
    assert sio.take("incidents") == []  # nothing changed since
    stream.connect("b")
    stream.step(0.3)
    [(snapshot, to)] = sio.take("snapshot")
    assert to == ["b"] and snapshot["incidents"] == incidents  # whole, for a fresh page


def test_the_workers_message_carries_the_chaos_knobs_to_every_page():
    cluster = fast_cluster()
    stream, sio, _ = make_stream(cluster)
    for sid in ("a", "b"):
        stream.connect(sid)
    stream.step(0.0)
    sio.take("snapshot")
    cluster.chaos.update(failure_rate=0.6)
    stream.step(1.0)
    [(message, to)] = sio.take("workers")
    assert sorted(to) == ["a", "b"] and message["chaos"]["failure_rate"] == 0.6


def test_the_snapshot_says_whether_the_demos_chaos_knobs_drive_the_apps_steps():
    demo = build_snapshot(fast_cluster())
    assert demo["app"] == {"name": "demo", "chaos": True}
    shop = App("shop")
    shop.add_step("payment", lambda ctx: {})
    shop.workflow("checkout", ["payment"])
    other = build_snapshot(Cluster(workers=1, app=shop))
    assert other["app"] == {"name": "shop", "chaos": False}


def test_a_failed_attempts_traceback_stays_out_of_the_stream_and_the_snapshot():
    from test_api_orders import HandOnlyWorker

    from scheduler.steps.failure import Failure

    cluster = fast_cluster(workers=0)
    stream, sio, _ = make_stream(cluster)
    worker = HandOnlyWorker()
    cluster.join_worker("w-1", worker)
    order_id = cluster.submit(ORDER)
    stream.connect("a")
    stream.step(0.0)
    sio.take("snapshot")
    (payment,) = worker.delivered
    assert cluster.begin_task("w-1", payment) is not None
    failure = Failure("RuntimeError: x", "Traceback ...\nRuntimeError: x")
    cluster.report("w-1", payment, False, failure)
    stream.step(0.1)
    sent = [e for batch, _ in sio.take("events") for e in batch if e["type"] == "task_failed"]
    assert [e["error"] for e in sent] == ["RuntimeError: x"] and "traceback" not in sent[0]
    stream.connect("b")
    stream.step(0.2)
    [(snapshot, _)] = sio.take("snapshot")
    (shown,) = [e for e in snapshot["events"] if e["type"] == "task_failed"]
    assert "traceback" not in shown
    # The order's own story has it.
    (kept,) = [e for e in cluster.story(order_id) if e["type"] == "task_failed"]
    assert kept["traceback"] == "Traceback ...\nRuntimeError: x"
