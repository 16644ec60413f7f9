"""Group commit on a writer thread of its own, that survives write errors and says so.

Under the scheduler lock, `record` only appends what a stimulus changed to pending buffers
(O(1)). The writer takes the lock briefly to swap the buffers out and snapshot each touched
row once (as records), writes everything in one transaction outside the lock, then wakes
whoever waits and runs the actions that waited for the commit (handing released steps to
workers). Durability costs one commit and one row per task per group, not per event.

A failed write (a full disk, a locked file) is not the end: the batch goes back in front of
the buffers, `check()` and `wait()` answer StoreError (503) while it fails, and the writer
tries again with backoff until it can write; then everything waiting is committed in order
and its actions run. Only a journal that is gone for good (`JournalLost`: its file deleted or
replaced) stops the writer: nothing written after that would survive a restart.

A batch the database refuses for something in it (`refused(exc)`: a value it cannot hold, a
constraint; not an outage) would be refused forever, so it is not retried as it is: its
text that no journal can hold (engine/text.py) is escaped and the batch written again; if
the database still refuses it, it is written row by row (`write_each`, one transaction) and
the rows it refuses are left out. Either way one CRITICAL line names the rows, every other
row is written, and the writer goes on. (The boundary keeps such text out; this is the
defence should something get past it.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine import views
from ..engine.model import Effects, Order, Task
from ..engine.records import OrderRecord, TaskRecord
from ..engine.states import S
from ..engine.text import escape_all
from ..engine.workflow import Workflow
from .rows import describe_event
from .schema import StoreError

if TYPE_CHECKING:
    from ..engine.core import SchedulerCore

log = logging.getLogger("orderflow.store")
# Moves that only place a task; they change nothing a restart needs: recovery queues an
# unfinished task again from its last written row, and its attempt comes out the same.
# Not writing them keeps the journal at about one task row per step.
PLACEMENT_MOVES = frozenset({(S.PENDING, S.READY), (S.READY, S.ASSIGNED), (S.ASSIGNED, S.RUNNING)})
# How often an idle writer looks at its file (a deleted journal is noticed within this).
WATCH_INTERVAL = 0.5
# Backoff between attempts while writes fail (seconds): doubled from the first to the cap.
RETRY_FIRST, RETRY_CAP = 0.05, 2.0
# Tasks and orders whose text was refused once, escaped before each later write of theirs
# (their live values in the engine are unchanged); the oldest are forgotten past this.
TAINTED_MEMORY = 10_000


class JournalLost(StoreError):
    """The journal's storage is gone (deleted, replaced): no later write could survive."""


class Deposed(JournalLost):
    """This server's leadership lease is over (another server leads the database now, or it
    could not renew in time): it writes nothing more. Not an outage: the elector logs the
    step-down in its one line, and the server goes on as a standby."""


@dataclass
class Batch:
    """One group commit: the swapped-out buffers and the rows snapshotted from them."""

    ticket: int
    events: list[dict]
    tasks: dict[str, Task]
    orders: dict[str, Order]
    actions: list[Callable[[], None]]
    task_records: list[TaskRecord] = field(default_factory=list)
    order_records: list[OrderRecord] = field(default_factory=list)
    counters: str = "{}"  # the core's numbering and totals, as JSON
    # Incidents that changed (their views, runtime/incidents.py) and the id of the oldest
    # one kept (older rows go), or None.
    incidents: list[dict] = field(default_factory=list)
    incidents_from: int | None = None
    # Steps whose controls changed (SchedulerCore.control_view), the latest of each.
    controls: list[dict] = field(default_factory=list)
    # Schedules whose marks moved (engine/schedules.py Mark.view), the latest of each.
    schedules: list[dict] = field(default_factory=list)
    # Workflow definitions first used by an order of this batch (each written once).
    definitions: list[Workflow] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.events or self.tasks or self.orders or self.incidents
                    or self.controls or self.schedules or self.definitions)


class GroupWriter:
    """The buffers, the writer thread and its failure state, for any journal backend.

    `write(batch)` stores one batch in one transaction (or raises); `watch()` raises
    JournalLost when the storage is gone; `run_jobs` hands maintenance work (pruning) to
    the writer thread so it never races a commit.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[Batch], None],
        watch: Callable[[], None] = lambda: None,
        refused: Callable[[BaseException], bool] = lambda exc: False,
        write_each: Callable[[Batch], list[tuple[str, str]]] | None = None,
    ):
        """`refused(exc)`: the database refused the batch for something in it, which no
        retry can cure; `write_each(batch)`: write it row by row in one transaction,
        leaving out the rows the database refuses, and return them as (table, what)."""
        self.name = name
        self._write, self._watch = write, watch
        self._refused, self._write_each = refused, write_each
        self._tainted: OrderedDict[str, None] = OrderedDict()  # task and order ids
        # Tickets (after, up to) of commits that left an order's row out: not acknowledged.
        self._unacknowledged: deque[tuple[int, int]] = deque(maxlen=64)
        # Since when the work being written has waited for a commit (time.monotonic();
        # None while nothing is being written or the last write succeeded).
        self._stalled_since: float | None = None
        self._core: SchedulerCore | None = None
        self._core_lock: threading.Lock | None = None
        # Filled under the scheduler lock by `record`, swapped out by the writer.
        self._events: list[dict] = []
        self._tasks: dict[str, Task] = {}
        self._orders: dict[str, Order] = {}
        self._actions: list[Callable[[], None]] = []
        self._incidents: dict[int, dict] = {}
        self._incidents_from: int | None = None
        self._controls: dict[str, dict] = {}
        self._schedules: dict[str, dict] = {}
        self._definitions: dict[str, Workflow] = {}
        self._ticket = 0
        # Guarded by `_done`: what is committed, the current failure, jobs, stop.
        self._done = threading.Condition()
        self._committed = 0
        self._failure: Exception | None = None
        self._failures = 0  # consecutive failed attempts
        self._lost = False
        self._jobs: list[Callable[[], None]] = []
        self._stop = False
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderflow-journal", daemon=True)

    def attach(self, core: SchedulerCore, lock: threading.Lock) -> None:
        self._core, self._core_lock = core, lock
        if not self._thread.is_alive():
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------ callers

    def record(self, fx: Effects, on_commit: Callable[[], None] | None = None) -> int:
        """Under the scheduler lock: remember what changed; returns a ticket to wait on.
        `on_commit` runs on the writer thread right after these changes are committed."""
        self._events.extend(fx.events)
        tasks = self._tasks
        for task, start, finish in fx.moves:
            if (start, finish) not in PLACEMENT_MOVES:
                tasks[task.id] = task
        self._orders.update(fx.orders)
        for workflow in fx.definitions:
            self._definitions[workflow.key] = workflow
        if on_commit is not None:
            self._actions.append(on_commit)
        self._ticket += 1
        if not self._wake.is_set():
            self._wake.set()
        return self._ticket

    def note_incidents(self, views: list[dict], keep_from: int | None) -> None:
        """Under the scheduler lock, before the `record` of the events that changed them:
        incidents to write (the latest view of each wins) in the same commit as those
        events, and the id of the oldest one the incident log keeps."""
        for view in views:
            self._incidents[view["id"]] = view
        if keep_from is not None:
            self._incidents_from = keep_from

    def note_controls(self, views: list[dict]) -> None:
        """Under the scheduler lock, before the `record` of the events that changed them:
        steps' controls to write (the latest view of each wins) in the same commit."""
        for view in views:
            self._controls[view["step"]] = view

    def note_schedules(self, views: list[dict]) -> None:
        """Under the scheduler lock, before the `record` of the events of the same change
        (a schedule's order, its skip): schedules' marks to write in the same commit."""
        for view in views:
            self._schedules[view["name"]] = view

    def wait(self, ticket: int | None, timeout: float | None = None) -> bool:
        """Return True once `ticket` is committed, False once `timeout` seconds (if given)
        passed first; StoreError if writing fails meanwhile (the records stay queued and
        are committed once the journal can be written again)."""
        if ticket is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while (
                self._committed < ticket and self._failure is None and self._thread.is_alive()
            ):
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._done.wait(left)
            if self._committed >= ticket and not self._left_out(ticket):
                return True
            reason = self._failure or (
                "the journal was closed first" if self._committed < ticket else
                "the database refused an order of this commit (see the CRITICAL log line)")
        # A deposed leader says so (its callers go to the new leader), an outage as such.
        error = Deposed if isinstance(reason, Deposed) else StoreError
        raise error(f"could not write {self.name}: {reason}")

    def committed(self, ticket: int) -> bool:
        with self._done:
            return self._committed >= ticket

    def stalled_for(self, now: float) -> float:
        """Seconds (at `now`, time.monotonic) that the work being written has waited for a
        commit, once an attempt to commit it has failed: from when the writer took it,
        through every failed attempt, until a commit succeeds; 0 while nothing failed. A
        write that is merely slow (a big batch) does not count until it fails; one that
        hangs fails within the database's own timeouts (lock, statement). A leader whose
        journal cannot commit for longer than its lease steps down (election.py)."""
        since = self._stalled_since
        if since is None or not self._failures:
            return 0.0
        return max(0.0, now - since)

    def check(self) -> None:
        """Raise StoreError while nothing recorded now could become durable."""
        failure = self._failure
        if failure is not None:
            error = Deposed if isinstance(failure, Deposed) else StoreError
            raise error(f"could not write {self.name}: {failure}")
        if self._stop or (self._core is not None and not self._thread.is_alive()):
            raise StoreError(f"{self.name} is closed")

    def run_job(self, job: Callable[[], Any], timeout: float) -> Any:
        """Run `job()` on the writer thread, between commits; returns what it returns."""
        if not self._thread.is_alive():
            return job()
        outcome: list[Any] = []
        finished = threading.Event()

        def wrapped() -> None:
            try:
                outcome.append((True, job()))
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                outcome.append((False, exc))
            finally:
                finished.set()

        with self._done:
            self._jobs.append(wrapped)
        self._wake.set()
        if not finished.wait(timeout):
            raise StoreError(f"a job on {self.name} did not finish within {timeout:.0f} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still pending (trying for up to `timeout` if writes fail), then
        stop the writer."""
        if self._thread.is_alive():
            with self._done:
                self._stop = True
            self._wake.set()
            self._thread.join(timeout)
            self._closing.set()  # a writer still backing off gives up now
            self._thread.join(5)

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while self.write_once():
            pass

    def write_once(self) -> bool:
        """One round: wait for work (or look at the storage now and then), write it, report.
        False once the writer should end."""
        self._wake.wait(WATCH_INTERVAL)
        self._wake.clear()
        with self._done:
            stop, jobs, self._jobs = self._stop, self._jobs, []
        batch = None
        try:
            self._watch()
            batch = self._take()
            if not batch.empty:
                if self._stalled_since is None:
                    self._stalled_since = time.monotonic()
                self._commit(batch)
        except JournalLost as exc:
            self._lose(exc, batch)
            return False
        except Exception as exc:  # noqa: BLE001 - kept and tried again, never lost
            with self._done:
                self._jobs[:0] = jobs  # maintenance waits for a working journal too
            return self._failed(exc, batch, stop)
        self._succeeded(batch)
        for job in jobs:
            job()
        return not stop

    def _commit(self, batch: Batch) -> None:
        """Write `batch`; a refusal of something in it (see the module docstring) is
        rescued rather than raised, so it cannot stop every later commit."""
        if self._tainted:
            self._escape(batch, only=self._tainted)
        try:
            self._write(batch)
        except JournalLost:
            raise
        except Exception as exc:  # noqa: BLE001 - classified by the backend
            if not self._refused(exc):
                raise
            self._rescue(batch, exc)

    def _rescue(self, batch: Batch, exc: BaseException) -> None:
        """The database refused `batch` for what it holds: escape its unstorable text and
        write it again; if that is still refused, write it row by row without the rows the
        database refuses. One CRITICAL line says which rows, and why."""
        escaped = self._escape(batch)
        reason = _one_line(exc)
        if escaped:
            try:
                self._write(batch)
            except JournalLost:
                raise
            except Exception as again:  # noqa: BLE001 - classified by the backend
                if not self._refused(again):
                    raise
                reason = _one_line(again)
            else:
                log.critical("journal %s refused a group commit (%s); wrote it with the text "
                             "it cannot hold escaped in: %s", self.name, reason,
                             "; ".join(escaped))
                return
        if self._write_each is None:
            raise exc
        left_out = self._write_each(batch)
        orders = any(table == "orders" for table, _ in left_out)
        if orders:
            # An order whose row was left out is not durable: its submission, and the
            # others of this commit (their callers cannot be told apart), answer 503.
            with self._done:
                self._unacknowledged.append((self._committed, batch.ticket))
        log.critical("journal %s refused a group commit (%s); wrote it row by row, leaving "
                     "out what it refused: %s%s", self.name, reason,
                     "; ".join(what for _, what in left_out) or "nothing (every row was "
                     "written)", "; its submissions are not acknowledged" if orders else "")

    def _escape(self, batch: Batch, only: OrderedDict[str, None] | None = None) -> list[str]:
        """Escape the text no journal can hold in the batch's rows (those of `only`'s ids, or
        all); returns what was changed. Tasks and orders changed are remembered (tainted),
        so their later rows, taken again from the engine's unchanged values, are escaped
        before they are written."""
        changed = []
        for i, record in enumerate(batch.order_records):
            if only is not None and record.id not in only:
                continue
            fields = (record.workflow, record.data, record.idempotency_key)
            clean = escape_all(fields)
            if clean is not fields:
                workflow, data, key = clean
                batch.order_records[i] = dataclasses.replace(
                    record, workflow=workflow, data=data, idempotency_key=key)
                changed.append(f"order {record.id}")
                self._taint(record.id)
        for i, record in enumerate(batch.task_records):
            if only is not None and record.id not in only:
                continue
            clean = escape_all(record)
            if clean is not record:
                batch.task_records[i] = clean
                changed.append(f"order {record.order_id} step {record.step}")
                self._taint(record.id)
        if only is None:
            for i, event in enumerate(batch.events):
                clean = escape_all(event)
                if clean is not event:
                    batch.events[i] = clean
                    changed.append(describe_event(event))
        return changed

    def _left_out(self, ticket: int) -> bool:
        """Under `_done`: `ticket` belongs to a commit that left an order's row out."""
        return any(after < ticket <= upto for after, upto in self._unacknowledged)

    def _taint(self, row_id: str) -> None:
        self._tainted[row_id] = None
        self._tainted.move_to_end(row_id)
        while len(self._tainted) > TAINTED_MEMORY:
            self._tainted.popitem(last=False)

    def _take(self) -> Batch:
        """Swap the buffers out under the scheduler lock and snapshot their rows."""
        with self._core_lock:
            batch = Batch(self._ticket, self._events, self._tasks, self._orders, self._actions,
                          incidents=list(self._incidents.values()),
                          incidents_from=self._incidents_from,
                          controls=list(self._controls.values()),
                          schedules=list(self._schedules.values()),
                          definitions=list(self._definitions.values()))
            self._events, self._tasks, self._orders, self._actions = [], {}, {}, []
            self._incidents, self._incidents_from = {}, None
            self._controls, self._schedules, self._definitions = {}, {}, {}
            if batch.empty:
                return batch
            core = self._core
            # Records are cheap tuples of the values as they are now; encoding them (JSON)
            # happens in `write`, after the lock is released.
            batch.task_records = [core.task_record(t) for t in batch.tasks.values()]
            batch.order_records = [
                core.order_record(o, with_tasks=False) for o in batch.orders.values()
            ]
            counters = views.totals(core)
        batch.counters = json.dumps(counters)
        return batch

    def _put_back(self, batch: Batch) -> None:
        """A batch that could not be written goes back in front of what came since; rows
        are snapshotted again at the next attempt, so the newest state of each is written."""
        with self._core_lock:
            self._events[:0] = batch.events
            self._tasks = {**batch.tasks, **self._tasks}
            self._orders = {**batch.orders, **self._orders}
            self._actions[:0] = batch.actions
            self._incidents = {**{v["id"]: v for v in batch.incidents}, **self._incidents}
            if self._incidents_from is None:
                self._incidents_from = batch.incidents_from
            self._controls = {**{v["step"]: v for v in batch.controls}, **self._controls}
            self._schedules = {**{v["name"]: v for v in batch.schedules}, **self._schedules}
            self._definitions = {**{w.key: w for w in batch.definitions}, **self._definitions}

    def _succeeded(self, batch: Batch) -> None:
        self._stalled_since = None
        with self._done:
            recovered, self._failure = self._failure, None
            failures, self._failures = self._failures, 0
            self._committed = max(self._committed, batch.ticket)
            self._done.notify_all()
        if recovered is not None:
            log.warning(
                "journal %s writable again after %d failed attempt(s); pending work committed",
                self.name,
                failures,
            )
        for action in batch.actions:
            try:
                action()
            except Exception:  # noqa: BLE001 - one bad action must not stop the writer
                log.exception("post-commit action failed")

    def _failed(self, exc: Exception, batch: Batch | None, stop: bool) -> bool:
        if batch is not None:
            self._put_back(batch)
        with self._done:
            self._failure = exc
            self._failures += 1
            failures = self._failures
            self._done.notify_all()
        if failures == 1:
            # One line per outage, not per attempt.
            log.error(
                "journal write to %s failed: %s; answering 503 and retrying until it works",
                self.name,
                exc,
            )
        if stop and self._closing.is_set():
            log.error("journal %s closed with unwritten work: %s", self.name, exc)
            return False
        delay = min(RETRY_CAP, RETRY_FIRST * 2 ** min(failures - 1, 10))
        self._closing.wait(delay)
        self._wake.set()  # try again at once after the pause, work or not
        return True

    def _lose(self, exc: JournalLost, batch: Batch | None) -> None:
        if batch is not None:
            self._put_back(batch)
        with self._done:
            self._failure = exc
            self._lost = True
            self._done.notify_all()
        if isinstance(exc, Deposed):
            log.info("journal writer of %s stopped: %s", self.name, exc)
            return
        log.critical(
            "JOURNAL LOST: %s. Nothing more is acknowledged; restart the server once the "
            "database is back in place.",
            exc,
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class GroupWrittenJournal:
    """What the SQLite and PostgreSQL journals share: their writes go through a GroupWriter
    (`self._writer`), and an order's API view is its loaded record's."""

    _writer: GroupWriter

    def attach(self, core: SchedulerCore, lock: threading.Lock) -> None:
        """Bind to the core whose state is journaled and the lock that guards it."""
        self._writer.attach(core, lock)

    def record(self, fx: Effects, on_commit: Callable[[], None] | None = None) -> int:
        return self._writer.record(fx, on_commit)

    def note_incidents(self, views: list[dict], keep_from: int | None) -> None:
        """Incidents to write with the next `record`ed events (see GroupWriter)."""
        self._writer.note_incidents(views, keep_from)

    def note_controls(self, views: list[dict]) -> None:
        """Steps' controls to write with the next `record`ed events (see GroupWriter)."""
        self._writer.note_controls(views)

    def note_schedules(self, views: list[dict]) -> None:
        """Schedules' marks to write with the next `record`ed events (see GroupWriter)."""
        self._writer.note_schedules(views)

    def wait(self, ticket: int | None, timeout: float | None = None) -> bool:
        return self._writer.wait(ticket, timeout)

    def committed(self, ticket: int) -> bool:
        return self._writer.committed(ticket)

    def stalled_for(self, now: float) -> float:
        return self._writer.stalled_for(now)

    def load_order(self, order_id: str, with_events: bool = True) -> OrderRecord | None:
        raise NotImplementedError

    def find_order(self, order_id: str) -> dict | None:
        record = self.load_order(order_id, with_events=False)
        return None if record is None else record.view()
