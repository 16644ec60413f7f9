"""Remote workers: `orderflow worker` processes on a live server, killed, cut off, drained,
refused and started through the API; and the "/workers" protocol through the test client."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import wait_for
from remote import AUTH, TOKEN, log_of, remote_cluster
from web import ORDER, app_over, fast_cluster

from dashboard.app import create_app, services
from dashboard.workers import hub as worker_hub
from dashboard.workers.hub import CONNECTION_LOST, hub_of
from scheduler import App, Chaos, Cluster
from scheduler.cli import build_parser
from scheduler.engine.config import StepPolicy
from scheduler.remote.client import HandlerSpecError, WorkerProcess, load_handlers
from scheduler.remote.command import slots_of
from scheduler.remote.options import WorkerOptions
from scheduler.remote.protocol import EXIT_REFUSED, EXIT_STUCK, NAMESPACE
from scheduler.remote.supervisor import default_command, own_url

SLOW = "remote_handlers:SLOW_PAYMENT"


@pytest.fixture
def remote(tmp_path):
    with remote_cluster(tmp_path, latency_ms=(2.0, 8.0)) as rc:
        yield rc


def first_event(rc, kind: str, **match) -> dict | None:
    return next((e for e in rc.events(kind) if all(e.get(k) == v for k, v in match.items())),
                None)


def peak_running(events: list[dict], worker_id: str) -> int:
    """The most attempts that ran on the worker at once, by its events."""
    running = peak = 0
    for event in events:
        if event.get("worker_id") != worker_id:
            continue
        if event["type"] == "task_started":
            running += 1
            peak = max(peak, running)
        elif event["type"] in ("task_succeeded", "task_failed"):
            running -= 1
    return peak


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)[1])


# ---------------------------------------------------------------- real processes


@pytest.fixture
def slow_heartbeats(tmp_path):
    # Heartbeats alone would find a dead process only after 10 s: what finds it sooner is
    # its closed connection.
    with remote_cluster(tmp_path, latency_ms=(2.0, 8.0), heartbeat_timeout=10.0) as rc:
        yield rc


@pytest.mark.slow
def test_300_orders_finish_on_the_survivor_when_a_worker_process_is_sigkilled(slow_heartbeats):
    remote = slow_heartbeats
    a, b = remote.start_worker(), remote.start_worker()
    wa, wb = remote.joined(a), remote.joined(b)
    shown = {w["id"]: w for w in remote.cluster.workers()}
    assert shown[wa]["kind"] == "process" and shown[wa]["pid"] == a.pid
    assert shown[wb]["host"] == socket.gethostname() and shown[wb]["slots"] == 2

    ids = remote.cluster.submit_many([ORDER] * 300)
    wait_for(lambda: remote.cluster.stats()["tasks"]["succeeded"] >= 300, 30,
             message="a third of the tasks done")
    a.kill()  # SIGKILL: a real crash, mid-run
    assert a.wait(5) == -signal.SIGKILL
    wait_for(lambda: remote.status(wa) == "dead", 5, message=f"{wa} declared dead")
    assert remote.cluster.wait_until_idle(30)

    assert {remote.cluster.get_order(i)["status"] for i in ids} == {"completed"}
    succeeded = Counter((e["order_id"], e["step"]) for e in remote.events("task_succeeded"))
    assert len(succeeded) == 900 and set(succeeded.values()) == {1}  # nothing committed twice
    moved = {(e["order_id"], e["step"]) for e in remote.events("task_reassigned")
             if e["from_worker"] == wa}
    assert moved, "the killed worker held tasks"
    finisher = {(e["order_id"], e["step"]): e["worker_id"]
                for e in remote.events("task_succeeded")}
    assert {finisher[key] for key in moved} == {wb}
    assert [e["worker_id"] for e in remote.events("worker_dead")] == [wa]
    assert CONNECTION_LOST in first_event(remote, "worker_dead")["message"]
    remote.cluster.validate()


@pytest.mark.slow
def test_a_sigkilled_worker_process_has_its_task_running_elsewhere_once_its_connection_closes(
        tmp_path):
    # Heartbeats alone would find the dead process only after 600 s, far beyond the wait
    # below: what finds it, and moves its task, is its closed connection (0.5 s of grace).
    with remote_cluster(tmp_path, latency_ms=(2.0, 8.0), heartbeat_timeout=600.0) as rc:
        ids = {rc.joined(p): p for p in [rc.start_worker(handlers=SLOW, slots=1) for _ in "ab"]}
        order_id = rc.cluster.submit(ORDER)
        started = wait_for(lambda: first_event(rc, "task_started", order_id=order_id), 10)
        victim_id = started["worker_id"]
        survivor_id = next(w for w in ids if w != victim_id)
        ids[victim_id].kill()
        moved = wait_for(lambda: first_event(rc, "task_started", order_id=order_id,
                                             step="payment", worker_id=survivor_id), 60,
                         message="payment running on the survivor")
        dead = first_event(rc, "worker_dead", worker_id=victim_id)
        assert CONNECTION_LOST in dead["message"] and dead["seq"] < moved["seq"]
        assert rc.cluster.wait_until_idle(60)
        assert rc.cluster.get_order(order_id)["status"] == "completed"


@pytest.mark.slow
def test_async_handlers_wait_together_up_to_the_slots_without_a_thread_each(remote):
    proc = remote.start_worker(handlers="remote_handlers:ALL_ASYNC", slots=48)
    worker_id = remote.joined(proc)
    ids = remote.cluster.submit_many([ORDER] * 48)

    def busy() -> int:
        worker = next(w for w in remote.cluster.workers() if w["id"] == worker_id)
        return worker["busy"] >= 40

    wait_for(busy, 10, message="40 async payments waiting at once")
    # Main, heartbeat, the event loop and python-socketio's own: not one per slot.
    assert threads_of(proc.pid) < 16
    assert remote.cluster.wait_until_idle(20), log_of(proc)
    assert {remote.cluster.get_order(i)["status"] for i in ids} == {"completed"}
    assert peak_running(remote.events(), worker_id) <= 48


@pytest.mark.slow
def test_a_handler_module_may_mix_async_and_plain_handlers_within_its_slots(remote):
    proc = remote.start_worker(handlers="remote_handlers:ASYNC_PAYMENT", slots=3)
    worker_id = remote.joined(proc)
    ids = remote.cluster.submit_many([ORDER] * 9)
    assert remote.cluster.wait_until_idle(20), log_of(proc)
    orders = [remote.cluster.get_order(i) for i in ids]
    assert {o["status"] for o in orders} == {"completed"}
    tasks = orders[0]["tasks"]
    assert tasks["payment"]["result"]["async"] is True
    assert "async" not in tasks["packing"]["result"]
    # The server hands it slots + 1 (prefetch): the process itself keeps to its slots.
    assert peak_running(remote.events(), worker_id) == 3


@pytest.mark.slow
@pytest.mark.parametrize("handlers", ["remote_handlers:HANG_ONCE",
                                      "remote_handlers:HANG_ONCE_ASYNC"])
def test_a_hung_handler_is_cancelled_at_its_time_limit_and_the_order_still_ends(
        tmp_path, handlers):
    with remote_cluster(tmp_path, step_timeout=1.0) as rc:
        proc = rc.start_worker(handlers=handlers, slots=2)
        worker_id = rc.joined(proc)
        order_id = rc.cluster.submit(ORDER)
        assert rc.cluster.wait_until_idle(15), log_of(proc)
        assert rc.cluster.get_order(order_id)["status"] == "completed"  # by its retry
        failed = first_event(rc, "task_failed", order_id=order_id)
        # By the server's clock, or the worker's if that ran out first (a lagging monitor).
        assert failed["step"] == "payment"
        assert failed["error"].startswith("timed out after 1 s"), failed
        # Cancelled, the handler gave up (it would hang for a minute otherwise): its outcome
        # came back (rejected as late if the server's clock ran out first, which frees the
        # slot the server held as stuck) and nothing runs or sticks there any more.
        def settled() -> bool:
            worker = next(w for w in rc.cluster.workers() if w["id"] == worker_id)
            late = first_event(rc, "result_rejected", order_id=order_id)
            reported = "on the worker" in failed["error"] or (
                late is not None and "timed out" in late["message"])
            return reported and worker["stuck"] == 0 and worker["busy"] == 0

        wait_for(settled, 5, message="the cancelled attempt's outcome")
        assert "order " + order_id + " step payment attempt 1 on " + worker_id in log_of(proc)


@pytest.mark.slow
def test_a_process_whose_slots_are_all_stuck_exits_with_status_4_and_its_work_moves(
        tmp_path):
    with remote_cluster(tmp_path, step_timeout=1.0) as rc:
        stuck = rc.start_worker(handlers="remote_handlers:STUCK_PAYMENT", slots=1)
        stuck_id = rc.joined(stuck)
        ids = rc.cluster.submit_many([ORDER] * 2)  # one runs and hangs, one waits there
        wait_for(lambda: len(rc.events("task_started")) == 1, 10)
        assert stuck.wait(15) == EXIT_STUCK, log_of(stuck)
        assert log_of(stuck).count("stuck in handlers that ignored their cancellation") == 1
        assert "refusing" in log_of(stuck), "what waited there was handed back"
        assert rc.status(stuck_id) in ("removed", "dead")
        rc.joined(rc.start_worker())  # its supervisor's restart, say
        assert rc.cluster.wait_until_idle(15)
        assert {rc.cluster.get_order(i)["status"] for i in ids} == {"completed"}


@pytest.mark.slow
def test_a_worker_with_a_wrong_token_is_refused_on_both_sides(remote, caplog):
    with caplog.at_level(logging.WARNING, logger="orderflow.gate"):
        wrong = remote.start_worker(token="not-the-token")
        missing = remote.start_worker(token=None)
        assert wrong.wait(15) == EXIT_REFUSED
        assert missing.wait(15) == EXIT_REFUSED
    for proc in (wrong, missing):
        assert "refused the connection: unauthorized: a valid token is required" in log_of(proc)
    # Refused at the handshake, before the WebSocket opens; repeats within seconds are
    # counted into the next line, so one line at least.
    refusals = [r for r in caplog.records
                if r.name == "orderflow.gate" and "missing or wrong token" in r.getMessage()]
    assert refusals
    assert remote.cluster.workers() == []


@pytest.mark.slow
def test_a_cut_off_worker_is_declared_dead_and_its_late_result_is_rejected(remote):
    procs = [remote.start_worker(handlers=SLOW, slots=1) for _ in range(2)]
    ids = {remote.joined(p): p for p in procs}
    order_id = remote.cluster.submit(ORDER)
    started = wait_for(lambda: first_event(remote, "task_started", order_id=order_id), 10)
    victim_id = started["worker_id"]
    victim = ids[victim_id]
    survivor_id = next(w for w in ids if w != victim_id)

    os.kill(victim.pid, signal.SIGSTOP)  # frozen: no heartbeats, no FIN on its socket
    try:
        wait_for(lambda: remote.status(victim_id) == "dead", 5, message="declared dead")
        wait_for(lambda: first_event(remote, "task_started", order_id=order_id,
                                     worker_id=survivor_id), 5, message="payment moved")
    finally:
        os.kill(victim.pid, signal.SIGCONT)  # its handler finishes and reports, too late

    rejected = wait_for(lambda: first_event(remote, "result_rejected", order_id=order_id), 10,
                        message="late result rejected")
    assert (rejected["step"], rejected["worker_id"]) == ("payment", victim_id)
    assert remote.cluster.wait_until_idle(10)
    assert remote.cluster.get_order(order_id)["status"] == "completed"
    payments = [e for e in remote.events("task_succeeded") if e["order_id"] == order_id
                and e["step"] == "payment"]
    assert [e["worker_id"] for e in payments] == [survivor_id]
    # Told it was dead, the process joins again under a new id.
    assert remote.joined(victim, other_than=victim_id) != victim_id


@pytest.mark.slow
def test_a_worker_told_it_is_dead_stops_its_handlers_before_it_joins_again(tmp_path):
    # Found by an attack: a stalled worker declared dead kept running its payments while
    # the server started others (max_in_flight exceeded), and joined again at once.
    with remote_cluster(tmp_path, step_timeout=30.0,
                        steps={"payment": StepPolicy(max_in_flight=1)}) as remote:
        procs = [remote.start_worker(handlers="remote_handlers:STOPPABLE_PAYMENT", slots=1)
                 for _ in range(2)]
        ids = {remote.joined(p): p for p in procs}
        order_id = remote.cluster.submit(ORDER)
        started = wait_for(lambda: first_event(remote, "task_started", order_id=order_id), 10)
        victim_id = started["worker_id"]
        victim = ids[victim_id]
        survivor_id = next(w for w in ids if w != victim_id)
        os.kill(victim.pid, signal.SIGSTOP)  # frozen, its handler with it
        try:
            wait_for(lambda: remote.status(victim_id) == "dead", 10, message="declared dead")
            # Its payment moved, but the limit's only place is still its handler's.
            assert remote.cluster.stats()["held_by_limits"] == {"payment": 1}
            assert first_event(remote, "task_started", worker_id=survivor_id) is None
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        rejected = wait_for(lambda: first_event(remote, "result_rejected", worker_id=victim_id),
                            15, message="the stopped handler's failure, rejected")
        assert rejected["order_id"] == order_id
        moved = wait_for(lambda: first_event(remote, "task_started", worker_id=survivor_id), 15,
                         message="the payment started on the survivor")
        new_id = remote.joined(victim, other_than=victim_id)
        [rejoined] = [e for e in remote.events("worker_added") if e["worker_id"] == new_id]
        # Its handler stopped (and said so) before it joined again, and before the survivor
        # took the limit's place.
        assert rejected["seq"] < rejoined["seq"] and rejected["seq"] < moved["seq"]
        assert "cancelling the 1 handler it runs under that id" in log_of(victim)
        assert remote.cluster.wait_until_idle(20)
        assert remote.cluster.get_order(order_id)["status"] == "completed"
        assert not remote.events("attempt_ended")  # confirmed, not waited out


@pytest.mark.slow
def test_sigterm_drains_a_worker_process_which_exits_0(remote):
    proc = remote.start_worker(handlers=SLOW, slots=1)
    worker_id = remote.joined(proc)
    ids = [remote.cluster.submit(ORDER) for _ in range(3)]
    running = wait_for(lambda: first_event(remote, "task_started", worker_id=worker_id), 10)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, log_of(proc)
    kinds = [e["type"] for e in remote.events() if e["worker_id"] == worker_id
             and e["type"].startswith("worker_")]
    assert kinds == ["worker_added", "worker_draining", "worker_removed"]
    assert first_event(remote, "task_succeeded", order_id=running["order_id"], step="payment",
                       worker_id=worker_id), "its running task finished"
    assert not remote.events("result_rejected")

    # Its queued tasks went back to the ring and wait for a worker.
    remote.joined(remote.start_worker(handlers=SLOW, slots=3))
    assert remote.cluster.wait_until_idle(15)
    assert {remote.cluster.get_order(i)["status"] for i in ids} == {"completed"}


@pytest.mark.slow
def test_kill_and_drain_from_the_api_reach_processes_the_server_did_not_start(remote):
    a, b = remote.start_worker(), remote.start_worker()
    wa, wb = remote.joined(a), remote.joined(b)
    client = remote.app.test_client()
    response = client.post(f"/api/workers/{wa}/kill", headers=AUTH)
    assert response.status_code == 202 and "SIGKILL" in response.get_json()["message"]
    assert a.wait(5) == -signal.SIGKILL  # it killed itself when told: a real crash
    wait_for(lambda: remote.status(wa) == "dead", 5, message="declared dead by heartbeat")

    assert client.post(f"/api/workers/{wb}/drain", headers=AUTH).status_code == 202
    assert b.wait(5) == 0, log_of(b)
    assert remote.status(wb) == "removed"


@pytest.mark.slow
def test_a_result_too_big_to_send_is_a_failed_attempt_not_a_reconnect_loop(tmp_path):
    with remote_cluster(tmp_path, max_retries=0) as rc:
        proc = rc.start_worker(handlers="remote_handlers:HUGE_PAYMENT")
        worker_id = rc.joined(proc)
        order_id = rc.cluster.submit(ORDER)
        assert rc.cluster.wait_until_idle(10)
        assert rc.cluster.get_order(order_id)["status"] == "failed"
        failed = first_event(rc, "task_failed", order_id=order_id)
        assert "result too large to send" in failed["error"]
        assert rc.status(worker_id) == "alive" and "lost the connection" not in log_of(proc)


@pytest.mark.slow
def test_a_handler_bug_on_a_worker_process_is_a_failure_with_its_traceback(tmp_path):
    with remote_cluster(tmp_path, max_retries=0) as rc:
        proc = rc.start_worker(handlers="remote_handlers:CRASHING_PAYMENT")
        rc.joined(proc)
        order_id = rc.cluster.submit(ORDER)
        assert rc.cluster.wait_until_idle(10)
        failed = first_event(rc, "task_failed", order_id=order_id)
    assert failed["error"] == "KeyError: 'charge_id'"
    trace = failed["traceback"].splitlines()
    assert trace[0] == "Traceback (most recent call last):"
    assert 'remote_handlers.py", line' in trace[1] and trace[1].endswith("in crashes")
    assert any(t.endswith("in _parse_charge") for t in trace)
    assert trace[-1] == "KeyError: 'charge_id'"


@pytest.mark.slow
def test_a_worker_whose_connection_drops_reconnects_and_resumes_under_its_id(tmp_path):
    with remote_cluster(tmp_path, heartbeat_timeout=5.0) as rc:
        proc = rc.start_worker()
        worker_id = rc.joined(proc)
        # Cut the line only once the process knows its id: were the acknowledgement of its
        # registration lost with the connection, joining again under a new id would be right
        # (and the old id declared dead), which is not what this test is about.
        wait_for(lambda: f"joined the cluster as {worker_id}" in log_of(proc), 15,
                 message="the worker to learn its id")
        assert rc.hub.drop_connection(worker_id)
        ids = rc.cluster.submit_many([ORDER] * 20)  # assigned while it may be disconnected
        assert rc.cluster.wait_until_idle(15), log_of(proc)
        assert {rc.cluster.get_order(i)["status"] for i in ids} == {"completed"}
        # Back within the grace after its connection closed: not declared dead for it.
        wait_for(lambda: rc.hub.closing == 0, 5, message="the grace to be over")
        assert [e["worker_id"] for e in rc.events("worker_added")] == [worker_id]
        assert rc.status(worker_id) == "alive" and not rc.events("worker_dead")
        assert f"resumed as {worker_id}" in log_of(proc)


@pytest.mark.slow
def test_api_starts_worker_processes_kill_sends_sigkill_and_shutdown_reaps_them(tmp_path):
    with remote_cluster(tmp_path) as rc:
        client = rc.app.test_client()
        response = client.post("/api/workers", json={"count": 2, "kind": "process"},
                               headers=AUTH)
        assert response.status_code == 202, response.get_json()
        pids = [p["pid"] for p in response.get_json()["processes"]]

        def members():
            found = {w["pid"]: w["id"] for w in rc.cluster.workers()
                     if w.get("pid") in pids and w["status"] == "alive"}
            return found if len(found) == 2 else None

        by_pid = wait_for(members, 15, message="both processes joined")
        victim = by_pid[pids[0]]
        response = client.post(f"/api/workers/{victim}/kill", headers=AUTH)
        assert response.status_code == 202 and "SIGKILL" in response.get_json()["message"]
        pool = rc.hub.pool
        returncodes = lambda: {p["pid"]: p["returncode"] for p in pool.processes()}  # noqa: E731
        wait_for(lambda: returncodes()[pids[0]] == -signal.SIGKILL, 5, message="SIGKILLed")
        wait_for(lambda: rc.status(victim) == "dead", 5, message="declared dead by heartbeat")

        ids = rc.cluster.submit_many([ORDER] * 10)
        assert rc.cluster.wait_until_idle(15)
        assert {rc.cluster.get_order(i)["status"] for i in ids} == {"completed"}
    # Shutdown drained and reaped the other one: no zombie, no orphan.
    assert all(code is not None for code in returncodes().values())
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_a_process_given_back_an_id_it_had_retired_after_a_server_restart_runs_its_work(
        tmp_path, monkeypatch):
    # The worst case of ids that repeat across server lifetimes: the new server hands the
    # process the very id an earlier server had declared dead. It must work under it.
    monkeypatch.setattr(worker_hub, "new_id_tag", lambda: "same", raising=False)
    with remote_cluster(tmp_path) as rc:
        proc = rc.start_worker()
        first = rc.joined(proc)
        os.kill(proc.pid, signal.SIGSTOP)  # stalls past the heartbeat timeout
        try:
            wait_for(lambda: rc.status(first) == "dead", 5, message="declared dead")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        rc.joined(proc, other_than=first)  # told it was dead, it joined again
        rc.restart()
        assert rc.joined(proc) == first, "the new server handed out the retired id again"
        ids = rc.cluster.submit_many([ORDER] * 5)
        assert rc.cluster.wait_until_idle(10), log_of(proc)
        assert {rc.cluster.get_order(i)["status"] for i in ids} == {"completed"}


@pytest.mark.slow
def test_a_drained_busy_worker_whose_order_is_cancelled_exits_0_and_never_rejoins(remote):
    proc = remote.start_worker(handlers=SLOW, slots=1)
    worker_id = remote.joined(proc)
    order_id = remote.cluster.submit(ORDER)
    wait_for(lambda: first_event(remote, "task_started", worker_id=worker_id), 10)
    client = remote.app.test_client()
    assert client.post(f"/api/workers/{worker_id}/drain", headers=AUTH).status_code == 202
    assert client.post(f"/api/orders/{order_id}/cancel", headers=AUTH).status_code == 200
    assert remote.status(worker_id) == "removed"
    later = remote.cluster.submit_many([ORDER] * 3)  # work it must not take

    assert proc.wait(10) == 0, log_of(proc)
    assert [e["worker_id"] for e in remote.events("worker_added")] == [worker_id], log_of(proc)
    assert all(remote.cluster.get_order(i)["status"] == "pending" for i in later)


# ---------------------------------------------------------------- HTTP API, no processes


@pytest.fixture
def idle_app():
    with app_over(fast_cluster(workers=1), start=False) as app:
        yield app


@pytest.mark.parametrize("body", [{"kind": "robot"}, {"kind": 1}, {"count": 2, "kind": None}])
def test_an_unknown_worker_kind_is_refused(idle_app, body):
    response = idle_app.test_client().post("/api/workers", json=body)
    assert response.status_code == 422
    assert "kind" in response.get_json()["error"]["message"]


def test_process_workers_need_the_servers_own_url(idle_app):
    response = idle_app.test_client().post("/api/workers", json={"kind": "process"})
    assert response.status_code == 409
    assert "ORDERFLOW_URL" in response.get_json()["error"]["message"]


def test_process_workers_are_limited(idle_app):
    idle_app.config.update(ORDERFLOW_URL="http://127.0.0.1:9", WORKER_PROCESS_LIMIT=2)
    response = idle_app.test_client().post("/api/workers", json={"count": 3, "kind": "process"})
    assert response.status_code == 409 and "at most 2" in response.get_json()["error"]["message"]
    assert hub_of(idle_app).pool.processes() == []


def test_process_workers_run_the_servers_app_and_refuse_an_app_they_could_not_load(
        monkeypatch):
    """A server built from `--app` passes it on; one given its app as an object cannot, and
    refuses rather than start workers that would run the demo's handlers for any order."""
    commands = []
    monkeypatch.setattr(worker_hub.ProcessPool, "spawn",
                        lambda pool, count: commands.append(pool.app()) or [])
    with app_over(fast_cluster(workers=0), {"ORDERFLOW_APP": "shop:app"}, start=False) as app:
        assert app.test_client().post("/api/workers", json={"kind": "process"}).status_code == 202
    assert commands == ["shop:app"]
    assert default_command("http://h:1", "local-1", "shop:app")[-2:] == ["--app", "shop:app"]
    assert "--app" not in default_command("http://h:1", "local-1")
    shop = App("shop")
    shop.add_step("payment", lambda ctx: {})
    shop.workflow("checkout", ["payment"])
    with app_over(Cluster(workers=0, app=shop), {"ORDERFLOW_URL": "http://127.0.0.1:9"},
                  start=False) as app:
        response = app.test_client().post("/api/workers", json={"kind": "process"})
        assert response.status_code == 409
        assert "orderflow worker --app" in response.get_json()["error"]["message"]
        assert hub_of(app).pool.processes() == []
    assert commands == ["shop:app"]


def test_a_server_built_from_settings_starts_its_workers_with_its_app():
    with app_over(fast_cluster(workers=0), start=False) as app:
        assert app.config["ORDERFLOW_APP"] is None  # the demo: no app to pass
    built = create_app({"CLUSTER_SETTINGS": {"app": "schedule_app:app", "workers": 0}})
    try:
        assert hub_of(built).pool.app() == "schedule_app:app"
    finally:
        services(built).stop()


# ---------------------------------------------------------------- the protocol, test client


REGISTRATION = {"session": "s-1", "name": "n", "host": "h", "pid": 42, "slots": 2}


@pytest.fixture
def hub_app():
    # Nobody beats for these test clients: long heartbeats keep their workers alive.
    cluster = fast_cluster(workers=0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    with app_over(cluster, {"ORDERFLOW_TOKEN": TOKEN}) as app:
        yield app


def worker_client(app, **auth):
    sio = app.extensions["orderflow"].socketio
    return sio.test_client(app, namespace=NAMESPACE, auth=auth or {"token": TOKEN})


def call(client, event: str, data) -> dict:
    return client.emit(event, data, namespace=NAMESPACE, callback=True)


def assigned(client) -> list[list]:
    return [t for m in client.get_received(NAMESPACE) if m["name"] == "assign"
            for t in m["args"][0]["tasks"]]


def test_the_protocol_runs_an_order_and_ignores_repeats(hub_app):
    client = worker_client(hub_app)
    welcome = call(client, "register", REGISTRATION)
    worker_id = welcome["worker_id"]
    assert welcome["resumed"] is False and welcome["heartbeat_timeout"] == 30.0
    cluster = hub_app.extensions["orderflow"].cluster
    assert next(w for w in cluster.workers() if w["id"] == worker_id)["pid"] == 42

    order_id = cluster.submit(ORDER)
    for step in ("payment", "packing", "shipping"):
        (task_id, lease), = wait_for(lambda: assigned(client), 5)
        ref = {"worker_id": worker_id, "task_id": task_id, "lease": lease}
        context = call(client, "begin", ref)["context"]
        assert context["step"] == step and context["idempotency_key"] == task_id
        assert call(client, "begin", ref)["context"] == context  # a lost answer, asked again
        result = {**ref, "ok": True, "value": {"done": step}}
        assert call(client, "result", result) == {"ok": True}
        assert call(client, "result", result) == {"ok": True}  # resent: not counted twice
    assert cluster.wait_until_idle(5)
    assert cluster.get_order(order_id)["status"] == "completed"
    assert cluster.stats()["rejected_results"] == 0
    assert call(client, "heartbeat", {"worker_id": worker_id})["alive"] is True
    client.disconnect(namespace=NAMESPACE)


def test_a_work_frame_batches_results_and_begins_and_ignores_repeats(hub_app):
    client = worker_client(hub_app)
    welcome = call(client, "register", REGISTRATION)
    assert welcome["protocol"] == 2, "the server says it answers `work` frames"
    worker_id = welcome["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    first, second = cluster.submit(ORDER), cluster.submit(ORDER)
    pairs = wait_for(lambda: (lambda got: got if len(got) == 2 else None)(assigned(client)), 5)
    frame = {"worker_id": worker_id, "results": [], "begin": pairs}
    contexts = call(client, "work", frame)["contexts"]
    assert [c["step"] for c in contexts] == ["payment", "payment"]
    assert [c["idempotency_key"] for c in contexts] == [t for t, _ in pairs]
    assert call(client, "work", frame)["contexts"] == contexts  # a lost answer, asked again
    # Both results and, in the same frame, nothing more to begin: the next steps are
    # assigned in one message each time.
    results = [[task_id, lease, True, {"n": i}] for i, (task_id, lease) in enumerate(pairs)]
    done = {"worker_id": worker_id, "results": results, "begin": []}
    assert call(client, "work", done) == {"contexts": [], "started": []}
    assert call(client, "work", done) == {"contexts": [], "started": []}  # not counted twice
    (message,) = wait_for(lambda: [m for m in client.get_received(NAMESPACE)
                                   if m["name"] == "assign"], 5)
    assert sorted(t for t, _ in message["args"][0]["tasks"]) == sorted(
        [f"{first}:packing", f"{second}:packing"]), "both in one message"
    assert cluster.get_order(first)["tasks"]["payment"]["result"] == {"n": 0}
    assert cluster.stats()["rejected_results"] == 0
    client.disconnect(namespace=NAMESPACE)


def test_a_work_frame_offering_slots_gets_the_next_steps_started_in_its_answer(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    orders = [cluster.submit(ORDER) for _ in range(2)]
    pairs = wait_for(lambda: (lambda got: got if len(got) == 2 else None)(assigned(client)), 5)
    call(client, "work", {"worker_id": worker_id, "results": [], "begin": pairs})
    done = [[task_id, lease, True, None] for task_id, lease in pairs]
    reply = call(client, "work", {"worker_id": worker_id, "results": done, "begin": [],
                                  "take": 1})
    (started,) = reply["started"]  # one slot offered: one started, the other assigned
    (task_id, lease, context) = started
    assert context["step"] == "packing" and context["idempotency_key"] == task_id
    assert task_id in {f"{o}:packing" for o in orders}
    order_id = task_id.partition(":")[0]
    assert cluster.get_order(order_id)["tasks"]["packing"]["status"] == "running"
    (other,) = wait_for(lambda: assigned(client), 5)
    assert other[0] != task_id
    # A repeated begin of the started one (its answer lost) gets the same context.
    ref = {"worker_id": worker_id, "task_id": task_id, "lease": lease}
    assert call(client, "begin", ref)["context"] == context
    client.disconnect(namespace=NAMESPACE)


def test_with_a_journal_offered_slots_start_nothing_before_the_results_are_durable(tmp_path):
    from scheduler.journal.sqlite import SQLiteJournal

    cluster = fast_cluster(workers=0, heartbeat_interval=10.0, heartbeat_timeout=30.0,
                           journal=SQLiteJournal(tmp_path / "j.db"))
    with app_over(cluster, {"ORDERFLOW_TOKEN": TOKEN}) as app:
        client = worker_client(app)
        worker_id = call(client, "register", REGISTRATION)["worker_id"]
        order_id = cluster.submit(ORDER)
        (pair,) = wait_for(lambda: assigned(client), 5)
        call(client, "work", {"worker_id": worker_id, "results": [], "begin": [pair]})
        reply = call(client, "work", {"worker_id": worker_id, "begin": [], "take": 2,
                                      "results": [[*pair, True, None]]})
        assert reply == {"contexts": [], "started": []}
        # The next step comes once the success is committed, in an `assign`.
        ((task_id, _),) = wait_for(lambda: assigned(client), 5)
        assert task_id == f"{order_id}:packing"
        client.disconnect(namespace=NAMESPACE)


def test_a_work_frame_runs_its_results_before_its_begins_and_fences_a_stale_lease(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    order_id = cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    call(client, "work", {"worker_id": worker_id, "results": [], "begin": [[task_id, lease]]})
    stale = [task_id, lease + 1]
    reply = call(client, "work", {"worker_id": worker_id,
                                  "results": [[task_id, lease, True, None], [*stale, True, 1]],
                                  "begin": [stale]})
    assert reply == {"contexts": [None], "started": []}, "a lease never given begins nothing"
    assert cluster.get_order(order_id)["tasks"]["payment"]["status"] == "succeeded"
    assert cluster.stats()["rejected_results"] == 1
    client.disconnect(namespace=NAMESPACE)


def test_heartbeats_and_work_frames_are_answered_on_their_connections_own_thread(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    guard = hub_app.extensions["orderflow_frames"]
    cluster = hub_app.extensions["orderflow"].cluster
    cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    body = {"worker_id": worker_id, "results": [], "begin": [[task_id, lease]]}
    frame = f'42{NAMESPACE},9["work",{json.dumps(body)}]'
    assert guard.may_answer_inline(frame)
    assert guard.may_answer_inline(f'42{NAMESPACE},3["heartbeat",{{}}]')
    assert not guard.may_answer_inline(f'42{NAMESPACE},3["result",{{}}]')
    assert not guard.may_answer_inline(f'42{NAMESPACE},3["workers",{{}}]')
    sent = []
    assert guard.answered_inline(client.eio_sid, frame, sent.append)
    (ack,) = sent
    assert ack.startswith(f"43{NAMESPACE},9[")
    (reply,) = json.loads(ack[ack.index("["):])
    assert reply["contexts"][0]["idempotency_key"] == task_id
    client.disconnect(namespace=NAMESPACE)


@pytest.mark.parametrize("bad", [
    {"results": "x"}, {"begin": [["t", 1, 2]]}, {"results": [["t", 1, "yes", None]]},
    {"results": [["t", 1, False, 3]]}, {"begin": [["t", 0]]}, {"results": [["t", 1, True]]},
    {"begin": [["t", 1]] * 1025}, {"take": -1}, {"take": "all"}])
def test_a_malformed_work_frame_is_refused_whole_and_changes_nothing(hub_app, bad):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    order_id = cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    # A good entry first: refused with the bad one, not applied before it.
    frame = {"worker_id": worker_id, "results": [], "begin": [[task_id, lease]]}
    for field, entries in bad.items():
        frame[field] = entries if not isinstance(entries, list) else [*frame[field], *entries]
    reply = call(client, "work", frame)
    assert reply["status"] == 422 and "contexts" not in reply
    assert cluster.get_order(order_id)["tasks"]["payment"]["status"] == "assigned"
    client.disconnect(namespace=NAMESPACE)


@pytest.mark.parametrize(("fields", "slots"), [({"slots": 500}, 500),
                                               ({"concurrency": 3}, 3)])  # an older client
def test_a_process_registers_its_slots_and_gets_that_many(hub_app, fields, slots):
    client = worker_client(hub_app)
    registration = {k: v for k, v in REGISTRATION.items() if k != "slots"}
    worker_id = call(client, "register", {**registration, **fields})["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    (worker,) = cluster.workers()
    assert (worker["id"], worker["slots"]) == (worker_id, slots)
    client.disconnect(namespace=NAMESPACE)


def test_a_process_gets_only_the_steps_it_has_handlers_for_and_whose_tags_it_offers(hub_app):
    cluster = hub_app.extensions["orderflow"].cluster
    payer = worker_client(hub_app)
    payer_id = call(payer, "register", {**REGISTRATION, "steps": ["payment"],
                                        "tags": ["payments"]})["worker_id"]
    (worker,) = cluster.workers()
    assert worker["id"] == payer_id
    order_id = cluster.submit(ORDER)
    (task_id, _), = wait_for(lambda: assigned(payer), 5)
    assert task_id == f"{order_id}:payment"
    task = cluster.get_order(order_id)["tasks"]
    assert task["packing"]["status"] == "pending"
    payer.disconnect(namespace=NAMESPACE)


def test_a_remote_result_that_is_not_valid_json_is_a_failed_attempt(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    order_id = cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    ref = {"worker_id": worker_id, "task_id": task_id, "lease": lease}
    call(client, "begin", ref)
    # What a worker's json.dumps writes for float("nan"): Python reads it back, browsers don't.
    assert call(client, "result", {**ref, "ok": True, "value": float("nan")}) == {"ok": True}
    failed = wait_for(lambda: [e for e in cluster.story(order_id) if e["type"] == "task_failed"],
                      5)
    assert "not valid JSON" in failed[0]["error"]
    assert cluster.get_order(order_id)["tasks"]["payment"]["result"] is None
    client.disconnect(namespace=NAMESPACE)


def test_a_remote_failure_carries_its_traceback_to_the_orders_story(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    order_id = cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    ref = {"worker_id": worker_id, "task_id": task_id, "lease": lease}
    call(client, "begin", ref)
    refused = call(client, "result", {**ref, "ok": False, "value": "x", "traceback": 42})
    assert refused["status"] == 422 and "traceback" in refused["error"]["message"]
    trace = ('Traceback (most recent call last):\n  File "shop.py", line 9, in payment\n'
             "KeyError: \x00")
    assert call(client, "result", {**ref, "ok": False, "value": "KeyError: 'id'",
                                   "traceback": trace}) == {"ok": True}
    failed = wait_for(lambda: [e for e in cluster.story(order_id) if e["type"] == "task_failed"],
                      5)
    assert failed[0]["error"] == "KeyError: 'id'"
    assert failed[0]["traceback"] == trace.replace("\x00", "\\x00")  # escaped at the door
    client.disconnect(namespace=NAMESPACE)


def test_a_failure_in_a_work_frame_carries_its_traceback_to_the_orders_story(hub_app):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    cluster = hub_app.extensions["orderflow"].cluster
    order_id = cluster.submit(ORDER)
    (pair,) = wait_for(lambda: assigned(client), 5)
    call(client, "work", {"worker_id": worker_id, "results": [], "begin": [pair]})
    bad = call(client, "work", {"worker_id": worker_id, "begin": [],
                                "results": [[*pair, False, "x", 42]]})
    assert bad["status"] == 422 and "traceback" in bad["error"]["message"]
    trace = 'Traceback (most recent call last):\n  File "shop.py", line 9\nKeyError: \x00'
    reply = call(client, "work", {"worker_id": worker_id, "begin": [],
                                  "results": [[*pair, False, "KeyError: 'id'", trace]]})
    assert reply == {"contexts": [], "started": []}
    failed = wait_for(lambda: [e for e in cluster.story(order_id) if e["type"] == "task_failed"],
                      5)
    assert failed[0]["error"] == "KeyError: 'id'"
    assert failed[0]["traceback"] == trace.replace("\x00", "\\x00")  # escaped at the door
    client.disconnect(namespace=NAMESPACE)


def test_a_connection_speaks_only_for_its_own_workers(hub_app):
    first, second = worker_client(hub_app), worker_client(hub_app)
    assert call(second, "heartbeat", {"worker_id": "p-1"})["status"] == 409  # not registered
    worker_id = call(first, "register", REGISTRATION)["worker_id"]
    call(second, "register", {**REGISTRATION, "session": "s-2"})
    for event in ("heartbeat", "drain"):
        answer = call(second, event, {"worker_id": worker_id})
        assert answer["status"] == 404 and answer["error"]["code"] == "not_found"
    for client in (first, second):
        client.disconnect(namespace=NAMESPACE)


def test_remote_worker_ids_differ_across_server_starts(hub_app):
    with app_over(fast_cluster(workers=0, heartbeat_timeout=30.0),
                  {"ORDERFLOW_TOKEN": TOKEN}) as restarted:
        ids = []
        for app in (hub_app, restarted):
            client = worker_client(app)
            ids.append(call(client, "register", REGISTRATION)["worker_id"])
            client.disconnect(namespace=NAMESPACE)
    assert all(re.fullmatch(r"p-[0-9a-f]{6}-1", worker_id) for worker_id in ids), ids
    assert ids[0] != ids[1]


def test_a_refused_assignment_moves_to_another_worker_at_once(hub_app):
    cluster = hub_app.extensions["orderflow"].cluster
    clients = {}
    for session in ("s-1", "s-2"):
        client = worker_client(hub_app)
        clients[call(client, "register", {**REGISTRATION, "session": session})["worker_id"]] = (
            client)
    order_id = cluster.submit(ORDER)

    def first_assigned():
        return next(((w, tasks) for w, c in clients.items() if (tasks := assigned(c))), None)

    refuser, [(task_id, lease)] = wait_for(first_assigned, 5)
    other = next(w for w in clients if w != refuser)
    answer = call(clients[refuser], "refuse", {"worker_id": refuser, "task_id": task_id,
                                               "lease": lease, "reason": "draining"})
    assert answer == {"ok": True, "moved": True}
    (moved_id, new_lease), = wait_for(lambda: assigned(clients[other]), 5)
    assert moved_id == task_id and new_lease != lease
    assert next(w for w in cluster.workers() if w["id"] == refuser)["status"] == "removed"
    moves = [e for e in cluster.story(order_id) if e["type"] == "task_reassigned"]
    assert [(m["from_worker"], m["worker_id"]) for m in moves] == [(refuser, other)]
    # Refused again (a repeat, or a stale lease): nothing left to move.
    again = call(clients[refuser], "refuse", {"worker_id": refuser, "task_id": task_id,
                                              "lease": lease, "reason": "draining"})
    assert again == {"ok": True, "moved": False}
    for client in clients.values():
        client.disconnect(namespace=NAMESPACE)


@pytest.mark.parametrize("bad", [{"task_id": "o-1:payment", "lease": 1, "reason": 7},
                                 {"task_id": "", "lease": 1}, {"task_id": "t", "lease": "1"}])
def test_a_malformed_refusal_is_answered_with_an_error_and_moves_nothing(hub_app, bad):
    client = worker_client(hub_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    answer = call(client, "refuse", {"worker_id": worker_id, **bad})
    assert answer["status"] == 422
    cluster = hub_app.extensions["orderflow"].cluster
    assert [w["status"] for w in cluster.workers()] == ["alive"]
    client.disconnect(namespace=NAMESPACE)


def test_a_process_that_registers_again_without_its_alive_id_has_that_id_drained(hub_app):
    # The answer naming its first id was lost with a connection: that id would otherwise
    # hold its tasks until the heartbeat timeout.
    cluster = hub_app.extensions["orderflow"].cluster
    client = worker_client(hub_app)
    first = call(client, "register", REGISTRATION)["worker_id"]
    order_id = cluster.submit(ORDER)
    wait_for(lambda: assigned(client), 5)
    second = call(client, "register", REGISTRATION)["worker_id"]
    assert second != first
    statuses = {w["id"]: w["status"] for w in cluster.workers()}
    assert statuses == {first: "removed", second: "alive"}
    assert cluster.get_order(order_id)["tasks"]["payment"]["worker"] == second
    client.disconnect(namespace=NAMESPACE)


def test_a_connection_speaks_for_one_process_only(hub_app):
    client = worker_client(hub_app)
    call(client, "register", REGISTRATION)
    answer = call(client, "register", {**REGISTRATION, "session": "s-2"})
    assert answer["status"] == 409 and answer["error"]["code"] == "one_process_per_connection"
    assert len(hub_app.extensions["orderflow"].cluster.workers()) == 1
    client.disconnect(namespace=NAMESPACE)


def test_joins_beyond_the_rate_limit_are_refused_with_429_saying_when_to_try_again():
    config = {"ORDERFLOW_TOKEN": TOKEN, "WORKER_JOINS_PER_SECOND": 0.5, "WORKER_JOIN_BURST": 2}
    with app_over(fast_cluster(workers=0, heartbeat_timeout=30.0), config) as app:
        clients = [worker_client(app) for _ in range(3)]
        answers = [call(c, "register", {**REGISTRATION, "session": f"s-{i}"})
                   for i, c in enumerate(clients)]
        assert [a.get("status") for a in answers] == [None, None, 429]
        assert answers[2]["error"]["code"] == "too_many_registrations"
        assert "try again in" in answers[2]["error"]["message"]
        assert len(app.extensions["orderflow"].cluster.workers()) == 2
        for client in clients:
            client.disconnect(namespace=NAMESPACE)


def test_a_process_holds_only_a_few_worker_ids_at_once():
    config = {"ORDERFLOW_TOKEN": TOKEN, "WORKER_IDS_PER_PROCESS": 2}
    with app_over(fast_cluster(workers=0, heartbeat_timeout=30.0), config) as app:
        cluster = app.extensions["orderflow"].cluster
        client = worker_client(app)
        for _ in range(2):
            worker_id = call(client, "register", REGISTRATION)["worker_id"]
            cluster.submit(ORDER)
            (task_id, lease), = wait_for(lambda: assigned(client), 5)
            call(client, "begin", {"worker_id": worker_id, "task_id": task_id, "lease": lease})
        # Each registration drains the id before it, but a running task keeps it draining.
        answer = call(client, "register", REGISTRATION)
        assert answer["status"] == 429 and answer["error"]["code"] == "too_many_worker_ids"
        assert [w["status"] for w in cluster.workers()] == ["draining", "draining"]
        client.disconnect(namespace=NAMESPACE)


def test_departed_worker_ids_are_remembered_only_up_to_a_bound(hub_app, monkeypatch):
    monkeypatch.setattr(worker_hub, "DEPARTED_HISTORY", 2)
    client = worker_client(hub_app)
    for _ in range(6):  # each registration drains (and so removes) the idle id before it
        call(client, "register", REGISTRATION)
    assert hub_of(hub_app).remembered == 3  # the current id and the 2 latest departed
    client.disconnect(namespace=NAMESPACE)


@pytest.fixture
def grace_app():
    # A grace no test waits out: `declare_lost(now)` is called with a later `now` instead.
    # Slow heartbeats: nobody beats for these test clients, and they must stay "alive".
    config = {"ORDERFLOW_TOKEN": TOKEN, "WORKER_RECONNECT_GRACE": 60.0}
    cluster = fast_cluster(workers=0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    with app_over(cluster, config) as app:
        yield app


def closed(client) -> tuple[float, float]:
    """Close the connection; the clock just before and just after."""
    before = time.monotonic()
    client.disconnect(namespace=NAMESPACE)
    return before, time.monotonic()


def test_a_process_whose_connection_closed_and_did_not_come_back_is_declared_dead(grace_app):
    cluster, hub = grace_app.extensions["orderflow"].cluster, hub_of(grace_app)
    client = worker_client(grace_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    order_id = cluster.submit(ORDER)
    wait_for(lambda: assigned(client), 5)
    before, after = closed(client)
    assert hub.declare_lost(before + 59.9) == [], "within the grace"
    assert [w["status"] for w in cluster.workers()] == ["alive"]
    assert hub.declare_lost(after + 60.0) == [worker_id]
    dead = [e for e in cluster.events() if e["type"] == "worker_dead"]
    assert [e["worker_id"] for e in dead] == [worker_id]
    assert f"declared dead: {CONNECTION_LOST}" in dead[0]["message"]
    moved = [e for e in cluster.story(order_id) if e["type"] == "task_reassigned"]
    assert [e["from_worker"] for e in moved] == [worker_id]
    assert hub.declare_lost(after + 120.0) == [], "once"


def test_a_process_that_resumes_within_the_grace_is_not_declared_dead(grace_app):
    cluster, hub = grace_app.extensions["orderflow"].cluster, hub_of(grace_app)
    client = worker_client(grace_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    _, after = closed(client)
    again = worker_client(grace_app)
    assert call(again, "register", {**REGISTRATION, "resume": worker_id})["resumed"] is True
    assert hub.declare_lost(after + 60.0) == []
    assert [w["status"] for w in cluster.workers()] == ["alive"]
    again.disconnect(namespace=NAMESPACE)


def test_a_drained_process_that_exits_is_not_declared_dead(grace_app):
    cluster, hub = grace_app.extensions["orderflow"].cluster, hub_of(grace_app)
    client = worker_client(grace_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    assert call(client, "drain", {"worker_id": worker_id}) == {"ok": True}
    _, after = closed(client)
    assert hub.declare_lost(after + 60.0) == []
    assert [w["status"] for w in cluster.workers()] == ["removed"]
    assert not [e for e in cluster.events() if e["type"] == "worker_dead"]


def test_a_draining_process_gone_with_a_task_running_is_declared_dead_so_the_task_moves(
        grace_app):
    cluster, hub = grace_app.extensions["orderflow"].cluster, hub_of(grace_app)
    client = worker_client(grace_app)
    worker_id = call(client, "register", REGISTRATION)["worker_id"]
    order_id = cluster.submit(ORDER)
    (task_id, lease), = wait_for(lambda: assigned(client), 5)
    call(client, "begin", {"worker_id": worker_id, "task_id": task_id, "lease": lease})
    call(client, "drain", {"worker_id": worker_id})
    assert [w["status"] for w in cluster.workers()] == ["draining"]
    _, after = closed(client)
    assert hub.declare_lost(after + 60.0) == [worker_id]
    assert cluster.get_order(order_id)["tasks"]["payment"]["status"] == "ready"


def test_a_process_still_running_a_dead_ids_handler_keeps_its_place_and_joins_once_it_ended():
    cluster = fast_cluster(workers=0, heartbeat_interval=10.0, heartbeat_timeout=30.0,
                           steps={"payment": StepPolicy(max_in_flight=1)})
    with app_over(cluster, {"ORDERFLOW_TOKEN": TOKEN}) as app:
        client = worker_client(app)
        worker_id = call(client, "register", {**REGISTRATION, "running": [],
                                              "ids": []})["worker_id"]
        cluster.submit(ORDER)
        (task_id, lease), = wait_for(lambda: assigned(client), 5)
        call(client, "begin", {"worker_id": worker_id, "task_id": task_id, "lease": lease})
        helper = worker_client(app)  # another process, with a free slot
        call(helper, "register", {**REGISTRATION, "session": "s-2", "slots": 1})
        cluster.submit(ORDER)
        assert cluster.stats()["held_by_limits"] == {"payment": 1}
        cluster.worker_lost(worker_id, "its connection closed and it did not come back")
        assert cluster.stats()["held_by_limits"] == {"payment": 2}  # it may still run
        # It comes back, still running that handler: counted, and not joined yet.
        answer = call(client, "register", {**REGISTRATION, "resume": worker_id,
                                           "running": [[worker_id, task_id, lease]],
                                           "ids": [worker_id]})
        assert (answer["worker_id"], answer["resumed"]) == (None, False)
        assert cluster.stats()["held_by_limits"] == {"payment": 2}
        # Its handler stopped: registering again running nothing, it joins anew and the
        # payment's place is free.
        answer = call(client, "register", {**REGISTRATION, "running": [], "ids": [worker_id]})
        assert answer["worker_id"] not in (None, worker_id)
        ended = [e for e in cluster.events() if e["type"] == "attempt_ended"]
        assert [(e["worker_id"], e["reason"]) for e in ended] == [(worker_id, "reported")]
        wait_for(lambda: cluster.stats()["held_by_limits"] == {"payment": 1}, 5,
                 message="one payment started")


@pytest.mark.parametrize("bad", [
    None, [], {"session": "s"}, {**REGISTRATION, "pid": "42"}, {**REGISTRATION, "pid": 0},
    {**REGISTRATION, "slots": 0}, {**REGISTRATION, "slots": 1025},
    {k: v for k, v in REGISTRATION.items() if k != "slots"}, {**REGISTRATION, "name": ""},
    {**REGISTRATION, "join": "yes"}, {**REGISTRATION, "extra": 1},
    {**REGISTRATION, "steps": "payment"}, {**REGISTRATION, "steps": [""]},
    {**REGISTRATION, "tags": [1]}, {**REGISTRATION, "tags": ["t"] * 65},
    {**REGISTRATION, "running": "o-1:payment"}, {**REGISTRATION, "running": [["p", "o:x"]]},
    {**REGISTRATION, "running": [["p", "o:x", 0]]}, {**REGISTRATION, "running": [[1, "o:x", 1]]},
    {**REGISTRATION, "ids": [1]}, {**REGISTRATION, "ids": ["p"] * 17},
])
def test_a_bad_registration_is_refused_and_joins_nobody(hub_app, bad):
    client = worker_client(hub_app)
    answer = call(client, "register", bad)
    assert answer["status"] == 422 and answer["error"]["code"] == "validation_error"
    assert hub_app.extensions["orderflow"].cluster.workers() == []
    client.disconnect(namespace=NAMESPACE)


@pytest.mark.parametrize("auth", [{"token": "wrong"}, {"nothing": 1}])
def test_a_worker_connection_without_the_token_is_refused(hub_app, auth, caplog):
    with caplog.at_level(logging.WARNING, logger="orderflow.gate"):
        client = worker_client(hub_app, **auth)
    assert not client.is_connected(NAMESPACE)
    assert "refused a worker connection" in caplog.text


# ---------------------------------------------------------------- pure pieces


def test_handlers_are_the_demo_ones_or_a_named_dict():
    assert set(load_handlers(None, Chaos())) == {"payment", "packing", "invoice", "shipping"}
    assert set(load_handlers(SLOW, Chaos())) == {"payment", "packing", "shipping"}
    for spec in ("remote_handlers", "no_such_module:X", "remote_handlers:MISSING",
                 "remote_handlers:NOT_A_DICT"):
        with pytest.raises(HandlerSpecError):
            load_handlers(spec, Chaos())


class TearingDownClient:
    """A Socket.IO client as python-socketio is while it runs our disconnect handler: still
    "connected" (and its Engine.IO client too) for a few more looks, then disconnected."""

    def __init__(self, looks: int):
        self.looks = looks
        self.connects = 0
        self.eio = self

    @property
    def connected(self) -> bool:
        self.looks -= 1
        return self.looks >= 0

    @property
    def state(self) -> str:
        return "connected" if self.looks >= 0 else "disconnected"

    def connect(self, *args, **kwargs) -> None:
        if self.connected or self.state != "disconnected":
            raise RuntimeError("Already connected")
        self.connects += 1


def test_a_reconnect_started_from_the_disconnect_handler_waits_for_the_old_connection_to_end():
    # Found by `orderflow chaos`: about half the reconnects after a server restart failed
    # once with "cannot reach ... (Already connected)" and waited out a backoff.
    worker = WorkerProcess(WorkerOptions(server="http://127.0.0.1:9"), {"payment": print})
    worker.sio = TearingDownClient(looks=3)
    worker._connect("http://127.0.0.1:9")
    assert worker.sio.connects == 1


class StandbyRefusingClient:
    """A Socket.IO client whose CONNECT a standby refuses, as python-socketio reports it:
    first our connect_error handler with the refusal, then a ConnectionError that carries
    no status at all."""

    def __init__(self, worker: WorkerProcess):
        self.worker, self.connected, self.failed_namespaces = worker, False, []
        self.eio = self
        self.state = "disconnected"

    def connect(self, *args, **kwargs) -> None:
        import socketio

        self.worker._on_connect_error(
            {"message": "a standby", "data": {"role": "standby", "leader": None}})
        self.failed_namespaces = [NAMESPACE]
        raise socketio.exceptions.ConnectionError(
            f"One or more namespaces failed to connect: {NAMESPACE}")


def test_a_standby_refusing_the_connect_is_not_final_whichever_thread_sees_it_first():
    # Found by the 60 s chaos --ha run: when the connecting thread reported the failure
    # before the main loop noticed the refused namespace, the exception's missing status
    # overwrote what the connect_error handler had learnt, and the worker exited 3.
    worker = WorkerProcess(WorkerOptions(server="http://127.0.0.1:9"), {"payment": print})
    worker.sio = StandbyRefusingClient(worker)
    with pytest.raises(Exception, match="namespaces failed"):
        worker._connect("http://127.0.0.1:9")
    assert worker._standby == ""
    worker._attempt_ended("One or more namespaces failed to connect")
    assert worker.session._forced is None


class StillTearingDownClient:
    """A Socket.IO client still closing a connection a standby refused: the refused
    namespace is still listed, and the next attempt waits for the teardown."""

    def __init__(self):
        self.failed_namespaces = [NAMESPACE]
        self.connected, self.eio, self.state = False, self, "connected"
        self.dialled = threading.Event()

    def connect(self, *args, **kwargs) -> None:
        self.dialled.set()


def test_the_last_connections_refusal_is_not_taken_for_the_next_attempts():
    # Found on a loaded machine: while an attempt waited for the last (refused)
    # connection's teardown, the main loop read that refusal as the new attempt's, gave it
    # up and logged "does not lead" for a server that led by then; the attempt connected
    # behind the session's back and the worker never joined.
    from scheduler.remote.client import _Attempt
    from scheduler.remote.effects import Connect

    worker = WorkerProcess(WorkerOptions(server="http://127.0.0.1:9", request_timeout=30),
                           {"payment": print})
    worker.sio = client = StillTearingDownClient()
    worker._standby = ""  # what the refused connection had learnt
    # The session asks for the attempt (as the main loop would carry it out, below).
    [dial] = [fx for fx in worker.session.tick(worker._clock()) if isinstance(fx, Connect)]
    reports = []
    attempt = _Attempt(functools.partial(worker._connect, dial.url),
                       reports.append)
    worker._attempt = attempt
    attempt.start()
    try:
        worker._main_once()
        assert worker._attempt is attempt and not attempt.abandoned
        assert worker.session._standby_seen is False
    finally:
        client.state = "disconnected"  # the teardown ends; the attempt dials and returns
        attempt.join(10)
    assert client.dialled.is_set() and reports == [None]
    assert client.failed_namespaces == []


@pytest.mark.parametrize("argv", [
    ["worker"], ["worker", "--server", "127.0.0.1:5000"],
    ["worker", "--server", "http://h", "--slots", "0"],
    ["worker", "--server", "http://h", "--slots", "many"],
    ["worker", "--server", "http://h", "--slots", "1025"],
    ["worker", "--server", "http://h", "--concurrency", "0"],
    ["worker", "--server", "http://a,b:5000"], ["worker", "--server", "http://a,http://a"],
    ["worker", "--server", ","],
])
def test_bad_worker_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_several_servers_are_one_comma_separated_list():
    args = build_parser().parse_args(["worker", "--server", "http://a:1/, https://b:2"])
    assert args.server == "http://a:1,https://b:2"


@pytest.mark.parametrize(("flags", "slots", "warned"), [
    ([], 8, False), (["--slots", "500"], 500, False), (["--concurrency", "3"], 3, True),
    (["--slots", "5", "--concurrency", "3"], 5, True),
])
def test_slots_default_to_the_servers_and_concurrency_is_a_deprecated_alias(
        flags, slots, warned, capsys):
    args = build_parser().parse_args(["worker", "--server", "http://h", *flags])
    assert slots_of(args) == slots
    lines = capsys.readouterr().err.splitlines()
    assert lines == (["orderflow worker: warning: --concurrency is deprecated; use --slots "
                      "(same meaning)"] if warned else [])


def test_own_url_reaches_a_wildcard_bind_through_loopback():
    assert own_url("0.0.0.0", 5000) == "http://127.0.0.1:5000"
    assert own_url("::", 80) == "http://[::1]:80"
    assert own_url("127.0.0.1", 1) == "http://127.0.0.1:1"
    assert own_url("localhost", 2) == "http://localhost:2"


@pytest.mark.slow
def test_a_standby_refusing_the_connect_itself_is_not_final_for_the_worker(remote):
    # A server that stops leading between the handshake (which its gate lets through) and
    # the Socket.IO CONNECT refuses the CONNECT, naming the leader (or none). The worker must
    # take that for a standby, not for a wrong token, and keep trying until one leads.
    from dashboard.failover.role import Role, ServerRole

    hub = remote.hub
    hub.standby = lambda: ServerRole(Role.STANDBY, epoch=3).refusal()
    proc = remote.start_worker()
    # Several attempts: whether the refusal reaches the worker first through its CONNECT
    # handler or through the exception the connect raises is a matter of thread timing.
    wait_for(lambda: log_of(proc).count("does not lead (no server leads yet)") >= 4
             or proc.poll() is not None, 30,
             message="the worker taking the refusal for a standby's, four times")
    assert proc.poll() is None, log_of(proc)
    assert remote.cluster.workers() == []
    hub.standby = lambda: None  # it leads now
    # Within a round of its backoff (at most 5 s, plus a connection's teardown): generous,
    # as a loaded machine stretches both.
    try:
        wait_for(lambda: len(remote.cluster.workers()) == 1, 45, message="the worker joining")
    except pytest.fail.Exception:
        pytest.fail(f"the worker did not join once the server led; its log:\n{log_of(proc)}")
    assert proc.poll() is None and "refused the connection" not in log_of(proc)
