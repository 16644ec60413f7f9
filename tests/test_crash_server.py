"""Nothing accepted is lost: `orderflow serve` (gunicorn) SIGKILLed with work in flight, then
started again on the same database. These are the issue's crash tests, on the real server."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import requests
from conftest import wait_for

from scheduler.chaos.serve_process import ServeProcess

pytestmark = pytest.mark.slow  # a real server process, SIGKILLed and restarted

ORDER = {"customer": "crash", "items": [{"sku": "X", "qty": 1, "price": 1.0}]}


class Server(ServeProcess):
    """A persisted `orderflow serve` with fast heartbeats, and an HTTP session to it."""

    def __init__(self, db: Path, latency: str = "1,3"):
        super().__init__(
            "--db", str(db), "--log-file", str(db.parent / "orderflow.log"), "--workers", "4",
            "--heartbeat-interval", "0.05", "--heartbeat-timeout", "0.5",
            "--failure-rate", "0", "--latency-ms", latency, "--log-level", "warning")
        self.http = requests.Session()

    def stats(self) -> dict:
        return self.http.get(f"{self.url}/api/stats", timeout=10).json()


def rows(db: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def assert_journal_consistent(db: Path) -> None:
    twice = rows(
        db,
        "SELECT order_id, step FROM events WHERE type = 'task_succeeded' "
        "GROUP BY order_id, step HAVING COUNT(*) > 1",
    )
    assert twice == [], f"steps recorded as succeeded twice: {twice[:5]}"
    seqs = [r[0] for r in rows(db, "SELECT seq FROM events ORDER BY rowid")]
    assert seqs == list(range(1, len(seqs) + 1)), "event seq is not strictly increasing 1..N"


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(db: Path, **kw) -> Server:
        server = Server(db, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.kill()
        server.http.close()


def test_sigkill_with_work_in_flight_loses_and_duplicates_nothing(tmp_path, servers):
    db = tmp_path / "orderflow.db"
    first = servers(db)
    ids: list[str] = []
    for _ in range(4):
        response = first.http.post(f"{first.url}/api/orders/bulk", json={"count": 250}, timeout=60)
        assert response.status_code == 201
        ids += response.json()["ids"]
    assert len(set(ids)) == 1000
    wait_for(lambda: first.stats()["orders"]["completed"] >= 100, 60, message="work in flight")
    first.kill()
    first.http.close()
    finished_before = rows(db, "SELECT COUNT(*) FROM orders WHERE status = 'completed'")[0][0]
    assert finished_before < 1000, "the kill came too late to test recovery"
    seq_before = rows(db, "SELECT MAX(seq) FROM events")[0][0]

    second = servers(db, latency="0,1")
    wait_for(lambda: second.stats()["orders"]["completed"] == 1000, 60, message="all completed")
    assert second.stats()["orders_total"] == 1000
    sample = second.http.get(f"{second.url}/api/orders/{ids[-1]}", timeout=10).json()
    assert sample["status"] == "completed"
    second.stop()
    second.http.close()

    statuses = Counter(r[0] for r in rows(db, "SELECT status FROM orders"))
    assert statuses == {"completed": 1000}
    assert rows(db, "SELECT MIN(seq) FROM events WHERE type = 'task_recovered'")[0][0] > seq_before
    assert_journal_consistent(db)


def test_every_acknowledged_order_survives_a_sigkill_right_after_its_ack(tmp_path, servers):
    db = tmp_path / "orderflow.db"
    server = servers(db)
    acked = []
    for _ in range(40):
        response = server.http.post(f"{server.url}/api/orders", json=ORDER, timeout=10)
        assert response.status_code == 201
        acked.append(response.json()["id"])
    server.kill()  # immediately after the last acknowledgement
    server.http.close()
    stored = {r[0] for r in rows(db, "SELECT id FROM orders")}
    assert set(acked) <= stored

    again = servers(db, latency="0,1")
    wait_for(lambda: again.stats()["orders"]["completed"] == 40, 30, message="acked orders done")
    again.stop()
    again.http.close()
    assert_journal_consistent(db)
