"""The durable journal: orders, tasks and every event in SQLite (WAL mode).

One writer thread owns the write connection and commits in groups. Under the scheduler lock,
`record` only appends the stimulus's events and the tasks and orders it touched to pending
buffers (O(1)). The writer takes the scheduler lock briefly to swap those buffers out and
snapshot each touched row once, writes everything in one transaction, then wakes whoever
waits for it. So durability costs one commit and one row per task per group, not per event.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.model import Effects, Order, Task
from ..engine.records import FINISHED_STATUSES, OrderRecord, ResumePoint, TaskRecord
from ..engine.states import TaskState
from .recovery import Recovered
from .rows import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    TASK_COLUMNS,
    TASK_FIELDS,
    event_from_row,
    event_row,
    order_from_row,
    order_row,
    placeholders,
    task_from_row,
    task_row,
)
from .schema import SCHEMA_VERSION, StoreError, migrate

if TYPE_CHECKING:
    from ..engine.core import SchedulerCore

log = logging.getLogger("orderflow.store")
# Where `orderflow serve` and `orderflow prune` keep the journal unless told otherwise.
DEFAULT_DB = "logs/orderflow.db"
S = TaskState
# Moves that only place a task; they change nothing a restart needs: recovery queues an
# unfinished task again from its last written row, and its attempt comes out the same.
# Not writing them keeps the journal at about one task row per step.
PLACEMENT_MOVES = frozenset({(S.PENDING, S.READY), (S.READY, S.ASSIGNED), (S.ASSIGNED, S.RUNNING)})
_FINISHED_SQL = "(" + ",".join(f"'{s}'" for s in sorted(FINISHED_STATUSES)) + ")"


class SQLiteJournal:
    persistent = True

    def __init__(self, path: str | os.PathLike, synchronous: str = "FULL"):
        self.path = Path(path)
        self._write = _connect(self.path, synchronous)
        self._read_lock = threading.Lock()
        self._read = _connect(self.path, synchronous, readonly_after_schema=True)
        self._core: SchedulerCore | None = None
        self._core_lock: threading.Lock | None = None
        # Filled under the scheduler lock by `record`, swapped out by the writer.
        self._events: list[dict] = []
        self._tasks: dict[str, Task] = {}
        self._orders: dict[str, Order] = {}
        self._ticket = 0
        # Guarded by `_done`: what is committed, actions waiting for a commit, jobs, stop.
        self._done = threading.Condition()
        self._committed = 0
        self._actions: list[Callable[[], None]] = []  # swapped out with the buffers
        self._jobs: list[Callable[[sqlite3.Connection], None]] = []
        self._stop = False
        self._failure: Exception | None = None
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderflow-journal", daemon=True)

    def attach(self, core: SchedulerCore, lock: threading.Lock) -> None:
        """Bind to the core whose state is journaled and the lock that guards it."""
        self._core, self._core_lock = core, lock
        if not self._thread.is_alive():
            self._thread.start()

    # ------------------------------------------------------------ Journal protocol

    def record(self, fx: Effects, on_commit: Callable[[], None] | None = None) -> int:
        """Under the scheduler lock: remember what changed; returns a ticket to wait on.

        `on_commit` runs on the writer thread right after these changes are committed.
        """
        self._events.extend(fx.events)
        tasks = self._tasks
        for task, start, finish in fx.moves:
            if (start, finish) not in PLACEMENT_MOVES:
                tasks[task.id] = task
        self._orders.update(fx.orders)
        if on_commit is not None:
            self._actions.append(on_commit)
        self._ticket += 1
        if not self._wake.is_set():
            self._wake.set()
        return self._ticket

    def wait(self, ticket: int | None) -> None:
        if ticket is None:
            return
        with self._done:
            while self._committed < ticket and self._failure is None and self._thread.is_alive():
                self._done.wait(0.5)
            if self._committed >= ticket:
                return
            reason = self._failure or "the journal was closed first"
        raise StoreError(f"could not write {self.path}: {reason}")

    def check(self) -> None:
        """Raise StoreError if nothing recorded from now on could become durable."""
        if self._failure is not None:
            raise StoreError(f"could not write {self.path}: {self._failure}")
        if self._stop:
            raise StoreError(f"{self.path} is closed")

    def find_idempotency_key(self, key: str) -> str | None:
        """The order that used `key`, for keys older than the in-memory window."""
        with self._read_lock:
            row = self._read.execute(
                "SELECT id FROM orders WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        """Write everything still pending, then stop the writer and close the file."""
        if self._thread.is_alive():
            with self._done:
                self._stop = True
            self._wake.set()
            self._thread.join(30)
        for conn in (self._write, self._read):
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------ reading

    def recover(self, finished_orders: int = 20_000, recent_events: int = 2_000) -> Recovered:
        """What the engine needs to continue: every unfinished order, the `finished_orders`
        most recent finished ones and the `recent_events` latest events."""
        return _load(self._read, self._read_lock, finished_orders, recent_events)

    def find_order(self, order_id: str) -> dict | None:
        record = self.load_order(order_id, with_events=False)
        return None if record is None else record.view()

    def load_order(self, order_id: str, with_events: bool = True) -> OrderRecord | None:
        """One order with its tasks (and events), e.g. to bring it back into memory."""
        with self._read_lock:
            row = self._read.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)
            ).fetchone()
            if row is None:
                return None
            return _with_tasks_and_events(self._read, [row], with_events)[0]

    def story(self, order_id: str) -> list[dict]:
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id = ? ORDER BY seq", (order_id,)
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def events_after(self, seq: int, limit: int) -> list[dict]:
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [event_from_row(r) for r in rows]

    # ------------------------------------------------------------ maintenance

    def prune(self, before_wall: float) -> dict:
        """Delete finished orders (and their tasks and events) that finished before the cutoff."""
        if not self._thread.is_alive():
            return prune_connection(self._write, before_wall)
        result: dict[str, Any] = {}
        finished = threading.Event()

        def job(conn: sqlite3.Connection) -> None:
            result.update(prune_connection(conn, before_wall))
            finished.set()

        with self._done:
            self._jobs.append(job)
        self._wake.set()
        if not finished.wait(120):
            raise StoreError(f"pruning {self.path} did not finish within 120 s")
        return result

    # ------------------------------------------------------------ writer

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._done:
                stop, jobs, self._jobs = self._stop, self._jobs, []
            try:
                ticket, actions = self._write_pending()
                for job in jobs:
                    job(self._write)
            except Exception as exc:  # noqa: BLE001 - waiters must learn of it, not hang
                log.exception("journal write to %s failed", self.path)
                with self._done:
                    self._failure = exc
                    self._done.notify_all()
                return
            with self._done:
                self._committed = max(self._committed, ticket)
                self._done.notify_all()
            for action in actions:
                try:
                    action()
                except Exception:  # noqa: BLE001 - one bad action must not stop the writer
                    log.exception("post-commit action failed")
            if stop:
                return

    def _write_pending(self) -> tuple[int, list[Callable[[], None]]]:
        """Swap the buffers out under the scheduler lock, then write them in one transaction."""
        with self._core_lock:
            events, self._events = self._events, []
            tasks, self._tasks = self._tasks, {}
            orders, self._orders = self._orders, {}
            actions, self._actions = self._actions, []
            ticket = self._ticket
            if not (events or tasks or orders):
                return ticket, actions
            core = self._core
            # Records are cheap tuples of the values as they are now; encoding them (JSON)
            # happens after the lock is released.
            task_records = [core.task_record(t) for t in tasks.values()]
            order_records = [core.order_record(o, with_tasks=False) for o in orders.values()]
            counters = {
                "counters": dict(core.counters),
                "orders_by_status": dict(core.orders_by_status),
                "tasks_by_state": dict(core.tasks_by_state),
                "seq": core.seq,
                "order_number": core.order_number,
                "lease_counter": core.lease_counter,
            }
        conn = self._write
        with conn:
            # Upserts: an order is written when submitted and again when its status becomes
            # (or, after a manual retry, stops being) final; its row may even be gone if
            # retention pruned it meanwhile.
            conn.executemany(
                f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({placeholders(ORDER_FIELDS)}) "
                "ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
                "finished_at = excluded.finished_at",
                map(order_row, order_records),
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) "
                f"VALUES ({placeholders(TASK_FIELDS)})",
                map(task_row, task_records),
            )
            conn.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) "
                f"VALUES ({placeholders(EVENT_FIELDS)},?,?)",
                map(event_row, events),
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('counters', ?)",
                (json.dumps(counters),),
            )
        return ticket, actions


def _connect(
    path: Path, synchronous: str, readonly_after_schema: bool = False
) -> sqlite3.Connection:
    """Open (creating and migrating if needed) with a clear StoreError for every bad case."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {folder} for {path}: {exc.strerror}. "
            "Choose another location with --db PATH."
        ) from None
    if not os.access(folder, os.W_OK):
        raise StoreError(
            f"the folder {folder} is not writable, so {path} cannot be used. "
            "Fix its permissions or choose another location with --db PATH."
        )
    try:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: inserts at random keys stay in memory
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path} could not be switched to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if not readonly_after_schema:
            migrate(conn, path)
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable orderflow database ({exc}). Move it aside and restart to "
            "begin with an empty database, or point --db at another file."
        ) from None


def prune_connection(conn: sqlite3.Connection, before_wall: float) -> dict:
    with conn:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM orders WHERE status IN {_FINISHED_SQL} AND finished_at < ?",
                (before_wall,),
            )
        ]
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM prune_ids")
        conn.executemany("INSERT INTO prune_ids VALUES (?)", [(i,) for i in ids])
        events = conn.execute(
            "DELETE FROM events WHERE order_id IN (SELECT id FROM prune_ids)"
        ).rowcount
        conn.execute("DELETE FROM tasks WHERE order_id IN (SELECT id FROM prune_ids)")
        conn.execute("DELETE FROM orders WHERE id IN (SELECT id FROM prune_ids)")
        conn.execute("DELETE FROM prune_ids")
    return {"orders": len(ids), "events": events}


def _with_tasks_and_events(
    conn: sqlite3.Connection, order_rows: list[tuple], with_events: bool = True
) -> list[OrderRecord]:
    """Order rows as records with their task rows and events (through a temp table of ids)."""
    ids = [row[0] for row in order_rows]
    tasks: dict[str, list[TaskRecord]] = {i: [] for i in ids}
    events: dict[str, list[dict]] = {i: [] for i in ids}
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS load_ids (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM load_ids")
    conn.executemany("INSERT INTO load_ids VALUES (?)", [(i,) for i in ids])
    for row in conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE order_id IN (SELECT id FROM load_ids)"
    ):
        record = task_from_row(row)
        tasks[record.order_id].append(record)
    if with_events:
        for row in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id IN (SELECT id FROM load_ids) "
            "ORDER BY seq"
        ):
            events[row[3]].append(event_from_row(row))
    conn.execute("DELETE FROM load_ids")
    # Filling the temp table opened a transaction; end it, or this reader would keep
    # seeing the database as it was now.
    conn.commit()
    return [order_from_row(row, tasks[row[0]], events[row[0]]) for row in order_rows]


def _load(
    conn: sqlite3.Connection,
    lock: threading.Lock,
    finished_limit: int,
    recent_events: int,
) -> Recovered:
    with lock:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        counters = json.loads(meta.get("counters", "{}"))
        rows = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status NOT IN {_FINISHED_SQL} "
            f"UNION ALL SELECT * FROM (SELECT {ORDER_COLUMNS} FROM orders "
            f"WHERE status IN {_FINISHED_SQL} ORDER BY number DESC LIMIT ?)",
            (finished_limit,),
        ).fetchall()
        rows.sort(key=lambda r: r[1])
        orders = _with_tasks_and_events(conn, rows)
        recent = [
            event_from_row(r)
            for r in conn.execute(
                f"SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?) "
                "ORDER BY seq",
                (recent_events,),
            )
        ]
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        number = conn.execute("SELECT COALESCE(MAX(number), 0) FROM orders").fetchone()[0]
    point = ResumePoint(
        seq=max(seq, counters.get("seq", 0)),
        order_number=max(number, counters.get("order_number", 0)),
        lease_counter=counters.get("lease_counter", 0),
        counters=counters.get("counters", {}),
        orders_by_status=counters.get("orders_by_status", {}),
        tasks_by_state=counters.get("tasks_by_state", {}),
        recent_events=recent,
    )
    return Recovered(point, orders)


__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "SQLiteJournal", "StoreError", "prune_connection"]
