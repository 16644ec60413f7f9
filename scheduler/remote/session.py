"""The decisions of one `orderflow worker` process, pure: events in, effects out.

`WorkerSession` is to the worker client what `SchedulerCore` is to the cluster. It has no
threads, sockets or clock: every stimulus takes `now`, and returns the effects the shell
(client.py) carries out: open a connection, send a message, run or cancel a handler, write
a log line, exit. So every rule below is tested with a fake clock and no server
(tests/test_worker_session.py):

- with several servers (`--server URL1,URL2`, servers sharing one database, one of which
  leads), it works for the leader: an attempt that fails, or that a standby refuses, goes on
  to the next server (to the leader a standby names, if it is one of them) at once; only a
  whole round of failures backs off. A round in which a standby answered (a failover under
  way) waits a short, fixed delay instead of a growing one. After a lost connection the
  same server is tried first;
- connection attempts back off with equal jitter, drawn from an injected `random.Random`;
- every connection registers: resuming under the current id, joining afresh, or (while
  draining) only reconnecting to hand in results;
- an assignment runs only under the process's current worker id; one it cannot run (another
  id, or the process is draining) is refused out loud, so the server moves it at once. One
  that arrives while a registration is unanswered waits for that answer, which may name the
  id it was sent to;
- at most `slots` assignments hold a slot at once (asking the server to `begin`, or running
  their handler); the rest wait in the local queue, oldest first;
- each running attempt has the time limit its context names: past it (on this process's
  clock), or when the server sends `cancel`, its handler is told to give up; its outcome is
  still reported (the server rejects it, which frees the slot it counts as stuck there);
- a cancelled handler that has not returned `cancel_grace` later is stuck; when every slot
  is stuck the process takes no more work (it refuses what waits, so the server moves it)
  and exits with EXIT_STUCK, for its supervisor to restart it;
- a worker told its id is dead (a refused heartbeat, `left` dead, or a registration that
  did not resume it) cancels every handler it runs under that id and joins again only once
  they have returned: until then the server counts them in their step's max_in_flight. A
  handler that ignores its cancellation, or any stuck handler while the process has no
  registered connection, ends the process at once (EXIT_STUCK), so that none runs on past
  the time limit plus the grace after which the server stops counting it;
- every registration says what the process still runs, under which ids (`running`, `ids`),
  so a restarted server (or a new leader) counts those handlers and stops counting the rest;
- a result stays until the server acknowledges it and is sent again after registering;
- draining (a signal, or the server's "removed") takes no new work, tells the server, and
  exits 0 once the running work has ended; without a connection it gives up after a grace.
"""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .effects import Assignment, Cancel, Connect, Effect, Exit, Log, Run, Send
from .options import Identity, WorkerOptions, reconnect_delay
from .protocol import (
    EXIT_REFUSED,
    EXIT_STUCK,
    MAX_BATCH,
    MAX_REPORTED_IDS,
    MESSAGE_MARGIN,
    error_message,
    parse_assign,
    parse_task_ref,
    welcome_problem,
)

# Assignments remembered, so one sent again (after a reconnect) is not run twice.
SEEN_MEMORY = 100_000
# After a send failed locally (the connection is going), wait this long before the next.
SEND_PAUSE = 0.5
# Worker ids a registration names as this process's (its handlers may run under them).
IDS_REMEMBERED = MAX_REPORTED_IDS
# `work` frames whose answer came too late, kept so that the tasks it says the server
# started for this process still run (at most this many).
LATE_MEMORY = 64


@dataclass
class _Request:
    event: str
    key: Any  # what the answer settles: a result's or refusal's key, a worker id
    connection: int
    deadline: float
    # A `work` frame's: the results it carries, the assignments it asks to begin, and the
    # free slots it offers for tasks the server starts at once (`take`).
    results: tuple[tuple[str, int], ...] = ()
    begins: tuple[tuple[str, int], ...] = ()
    take: int = 0


@dataclass
class _Slot:
    """An assignment holding one of the process's slots: asking the server to begin it,
    then (once the answer gives its context) running its handler."""

    assignment: Assignment
    asked: bool = False  # `begin` went out: the server may have started it
    context: dict | None = None  # the answer to `begin`; set: the handler runs
    timeout: float | None = None  # its time limit, from the context (seconds)
    deadline: float | None = None  # ... on this process's clock
    cancelled_at: float | None = None  # told to give up (timed out here, or by the server)
    timed_out_here: bool = False  # by this process's clock, before the server's cancel

    @property
    def running(self) -> bool:
        return self.context is not None

    def label(self) -> str:
        """How log lines name the attempt: order, step, attempt and worker."""
        context = self.context or {}
        order_id, _, step = self.assignment.task_id.rpartition(":")
        return (f"order {context.get('order_id', order_id)} step {context.get('step', step)} "
                f"attempt {context.get('attempt', '?')} on {self.assignment.worker_id}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _seconds(value: Any) -> float | None:
    """A time limit from a context: a positive finite number of seconds, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < math.inf else None


def _result_entry(key: tuple[str, int], result: dict) -> list:
    """A result as a `work` frame carries it: [task_id, lease, ok, value, traceback?]."""
    entry = [*key, result["ok"], result["value"]]
    return entry + [result["traceback"]] if "traceback" in result else entry


def _entry_bytes(key: tuple[str, int]) -> int:
    """Room one entry of a `work` frame's lists takes besides a result's value: its task id
    (escaped, at most twice as long), its lease, and the JSON around them."""
    return 2 * len(key[0]) + 48


def _result_refused(what: str, reply: Any) -> Log:
    """The line for results the server did not accept: expected after a time limit or a
    move (the scheduler has moved the step on, so nothing is lost), hence a warning."""
    if isinstance(reply, dict) and reply.get("status") == 404:
        # Its worker id is unknown here: given by an earlier server start or leader, whose
        # lease this one fences. The step runs again here.
        return Log("warning", f"{what} not accepted (a lease of an earlier server or "
                              f"leader): {error_message(reply)}")
    return Log("warning", f"{what} refused: {error_message(reply)} (the scheduler no "
                          "longer expects it from this worker)")


class WorkerSession:
    """Everything one worker process decides. Not thread-safe: the shell holds one lock."""

    def __init__(self, options: WorkerOptions, identity: Identity,
                 rng: random.Random | None = None):
        self.options = options
        self.identity = identity
        self._rng = rng or random.Random()
        # Connection
        self._connected = False
        self._connecting = False
        self._connection = 0  # counts connections; a registration belongs to one
        self._failures = 0
        self._next_attempt = 0.0
        # Servers: the one tried next (or connected to), attempts in this round, and whether
        # a standby answered in it.
        self._servers = options.servers
        self._at = 0
        self._tried = 0
        self._standby_seen = False
        # Registration
        self.worker_id: str | None = None  # the id the process works under now
        self._registered_on = -1
        self._register_rid: int | None = None
        self._register_failures = 0
        self._next_register = 0.0
        self.heartbeat_interval = 0.5
        self._next_beat = 0.0
        self._max_result = 1_000_000 - MESSAGE_MARGIN
        # The server answers `work` frames (protocol 2): results and begins go batched.
        self._batched = False
        # Requests awaiting their answer, by request id
        self._rids = 0
        self._inflight: dict[int, _Request] = {}
        self._late: OrderedDict[int, _Request] = OrderedDict()  # see LATE_MEMORY
        self._pause_until = 0.0
        # Assignments, by (task_id, lease)
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._held: list[Assignment] = []  # waiting for a registration's answer
        self._queued: OrderedDict[tuple[str, int], Assignment] = OrderedDict()  # for a slot
        self._slots: dict[tuple[str, int], _Slot] = {}  # at most options.slots
        self._results: dict[tuple[str, int], dict] = {}  # not yet acknowledged
        self._sizes: dict[tuple[str, int], int] = {}  # each result's value, JSON bytes
        self._refusals: dict[tuple[str, int], dict] = {}  # not yet acknowledged
        # Leaving
        self.draining = False  # no new work; exit once the running work has ended
        self.removed = False  # the server removed the current id after a drain
        self._signals = 0
        self._drain = "no"  # "no" | "sent" | "done": our `drain` request
        self._drain_deadline: float | None = None
        self._forced: tuple[int, str, str | None] | None = None  # (status, reason, notice)
        self._stuck_since: float | None = None  # every slot stuck: no more work, exit
        self._exited = False
        # Ids this process worked under, newest last, and those the server declared dead
        # (their handlers are being stopped; the process joins again once they have).
        self._ids: list[str] = []
        self._dead: list[str] = []

    # ------------------------------------------------------------------ queries

    @property
    def url(self) -> str:
        """The server connected to, or tried next."""
        return self._servers[self._at]

    @property
    def registered(self) -> bool:
        """Registered on the current connection (so messages may name our ids)."""
        return self._connected and self._registered_on == self._connection

    @property
    def busy(self) -> int:
        """Slots taken: assignments being begun or running, stuck ones included."""
        return len(self._slots)

    @property
    def queued(self) -> int:
        """Accepted assignments waiting for a free slot."""
        return len(self._queued)

    @property
    def unacknowledged(self) -> list[tuple[str, int]]:
        return list(self._results)

    def stuck(self, now: float) -> int:
        """Running handlers cancelled at least `cancel_grace` ago that have not returned."""
        return sum(1 for slot in self._slots.values() if self._is_stuck(slot, now))

    def winding_down(self) -> bool:
        """Handlers still run under an id the server declared dead: no joining until they
        have returned."""
        return any(slot.running and slot.assignment.worker_id in self._dead
                   for slot in self._slots.values())

    def is_cancelled(self, key: tuple[str, int]) -> bool:
        """The attempt was told to give up (so a handler started late starts cancelled)."""
        slot = self._slots.get(key)
        return slot is not None and slot.cancelled_at is not None

    def wait_hint(self, now: float) -> float:
        """How long the main loop may sleep before `tick` could have something to do."""
        due = [now + 0.5]
        if not self._connected and not self._connecting:
            due.append(self._next_attempt)
        if self._connected and self._needs_registration():
            due.append(self._next_register)
        due.append(self._drain_deadline or due[0])
        due.extend(r.deadline for r in self._inflight.values())
        due.append(self._pause_until)
        for slot in self._slots.values():
            if slot.cancelled_at is None and slot.deadline is not None:
                due.append(slot.deadline)
            elif slot.cancelled_at is not None and slot.running:
                due.append(slot.cancelled_at + self.options.cancel_grace)
        if self._stuck_since is not None:
            due.append(self._stuck_since + self.options.request_timeout)
        # Only what is still ahead: a time already past that `tick` did not act on (a drain
        # deadline while connected, say) must not make the loop spin.
        return min(t for t in due if t > now) - now

    def beat_wait(self, now: float) -> float:
        """How long the heartbeat loop may sleep before `beat` could send one."""
        if self.registered and self.worker_id is not None:
            return max(0.0, self._next_beat - now)
        return self.heartbeat_interval

    # ------------------------------------------------------------------ the main loop

    def tick(self, now: float) -> list[Effect]:
        """Time passed: time limits, exit, (re)connect, (re)register, or deliver what waits."""
        if self._exited:
            return []
        self._expire(now)
        fx = self._time_limits(now)
        done = self._exit_decision(now)
        if done:
            self._exited = True
            return fx + done
        if not self._connected:
            if not self._connecting and now >= self._next_attempt:
                self._connecting = True
                fx.append(Connect(self.url))
            return fx
        if self._needs_registration() and now >= self._next_register:
            return fx + [self._register(now)]
        if not self.registered or now < self._pause_until:
            return fx
        return fx + self._deliveries(now)

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> list[Effect]:
        self._connected, self._connecting = True, False
        self._connection += 1
        self._failures = 0
        self._tried, self._standby_seen = 0, False
        self._register_failures = 0
        self._next_register = now
        return [Log("info", f"connected to {self.url}"), self._register(now)]

    def connect_failed(self, error: str, refused: bool, now: float) -> list[Effect]:
        """A connection attempt ended without a connection; `refused`: by the server (its
        token)."""
        self._connecting = False
        failed = self.url
        if refused:
            notice = (f"orderflow worker: error: the server at {failed} refused "
                      f"the connection: {error}. Check --token or ORDERFLOW_TOKEN.")
            self._force(EXIT_REFUSED, "the server refused the connection", notice)
            return []
        delay = self._next_server(now)
        return [Log("warning", f"cannot reach {failed} ({error}); "
                               f"{self._next_attempt_text(delay)}")]

    def standby_answered(self, leader: str, now: float) -> list[Effect]:
        """A connection attempt was refused by a server that does not lead (a standby, or
        one still recovering after its election); `leader`: the leader's URL it names, or
        "". Not final: the next attempt goes to the leader, or the next server."""
        self._connecting = False
        self._standby_seen = True
        failed, hint = self.url, leader.rstrip("/")
        delay = self._next_server(now, hint)
        named = f"it names {hint} as the leader" if hint else "no server leads yet"
        return [Log("info", f"{failed} does not lead ({named}); "
                            f"{self._next_attempt_text(delay)}")]

    def _next_server(self, now: float, hint: str = "") -> float:
        """Move on after a failed attempt: to the leader `hint` names if it is one of ours,
        else to the next server; at once, unless this ends a round of every server. Returns
        the delay before the next attempt."""
        count = len(self._servers)
        if hint and hint in self._servers and hint != self.url:
            self._at = self._servers.index(hint)
        else:
            self._at = (self._at + 1) % count
        self._tried += 1
        if self._tried < count:
            delay = 0.0
        elif self._standby_seen:
            # A standby answered: a failover is under way and a leader comes within
            # seconds; ask again soon, without the growing backoff.
            base = self.options.reconnect_delay
            delay = self._rng.uniform(base / 2, base)
        else:
            delay = reconnect_delay(self._failures, self.options.reconnect_delay,
                                    self.options.reconnect_delay_max, self._rng)
            self._failures += 1
        if self._tried >= count:
            self._tried, self._standby_seen = 0, False
        self._next_attempt = now + delay
        return delay

    def _next_attempt_text(self, delay: float) -> str:
        if delay <= 0:
            return f"trying {self.url}"
        return f"next attempt in {delay:.1f}s ({self.url})"

    def connect_ended(self, now: float) -> list[Effect]:
        """A connection attempt returned after connecting."""
        self._connecting = False
        return []

    def disconnected(self, reason: object, now: float) -> list[Effect]:
        """The connection dropped: what was in flight is lost and goes out again later (a
        `begin` among it is asked again: the server answers a repeat alike)."""
        if not self._connected:
            return []
        self._connected = False
        self._inflight.clear()
        self._late.clear()
        self._register_rid = None
        if self._drain == "sent":
            self._drain = "no"
        # What waited for the registration's answer: its id is unknown now, so refuse it
        # (sent after the next registration; the server has moved it if it was ours).
        fx: list[Effect] = []
        for assignment in self._held:
            fx += self._refuse(assignment, "its registration's answer was lost", now)
        self._held.clear()
        if self.draining and self._drain_deadline is None:
            self._drain_deadline = now + self.options.drain_grace
        self._tried, self._standby_seen = 0, False
        if not self._exited:
            fx.append(Log("warning", f"lost the connection to {self.url} "
                                     f"({reason}); reconnecting"))
        return fx

    # ------------------------------------------------------------------ answers

    def answered(self, rid: int, reply: Any, now: float) -> list[Effect]:
        """The server acknowledged request `rid` with `reply`."""
        request = self._inflight.pop(rid, None)
        if request is None:
            late = self._late.pop(rid, None)
            if late is not None and late.connection == self._connection:
                # Timed out and sent again (its results and begins went in the repeat),
                # but the tasks the server started for it are this process's to run.
                return self._started(late, reply, now) + self._fill(now)
            return []
        if request.connection != self._connection:
            return []  # from a connection gone since
        if request.event == "register":
            return self._on_registered(reply, now)
        if request.event == "begin":
            return self._on_begun(request.key, reply, now)
        if request.event == "work":
            return self._on_worked(request, reply, now)
        if request.event == "heartbeat":
            if isinstance(reply, dict) and (reply.get("alive") is False
                                            or reply.get("status") == 404):
                return self._declared_dead(request.key, now)
            return []
        if request.event == "result":
            self._drop_result(request.key)
            if error_message(reply):
                task_id, lease = request.key
                return [_result_refused(f"result for {task_id} lease {lease}", reply)]
            return []
        if request.event == "refuse":
            self._refusals.pop(request.key, None)
            return []
        if request.event == "drain":
            return self._on_drain_answer(request.key, reply, now)
        return []

    def unanswered(self, rid: int, now: float) -> list[Effect]:
        """Request `rid` could not be sent: it goes out again after a pause."""
        request = self._inflight.pop(rid, None)
        if request is not None:
            if request.event == "register":
                self._register_rid = None
            elif request.event == "drain" and self._drain == "sent":
                self._drain = "no"
        self._pause_until = now + SEND_PAUSE
        self._next_register = max(self._next_register, now + SEND_PAUSE)
        return []

    def _on_registered(self, reply: Any, now: float) -> list[Effect]:
        self._register_rid = None
        problem = welcome_problem(reply)
        if problem is not None:
            if isinstance(reply, dict) and reply.get("status") == 422:
                self._force(2, f"the server refused the registration: {problem}")
                return []
            delay = self._register_backoff()
            self._next_register = now + delay
            return [Log("error", f"registration refused: {problem}; "
                                 f"trying again in {delay:.1f}s")]
        previous, worker_id = self.worker_id, reply["worker_id"]
        fx: list[Effect] = []
        if previous is not None and previous != worker_id:
            fx += self._dead_id(previous, now)  # not resumed: declared dead meanwhile
        if worker_id is not None and worker_id not in self._ids:
            self._ids = [*self._ids, worker_id][-IDS_REMEMBERED:]
        # The server's answer names the current id, even one this process had retired.
        self.worker_id = worker_id
        self._registered_on = self._connection
        self.heartbeat_interval = float(reply["heartbeat_interval"])
        protocol = reply.get("protocol", 1)
        self._batched = isinstance(protocol, int) and protocol >= 2
        self._max_result = int(reply.get("max_message_bytes", 1_000_000)) - MESSAGE_MARGIN
        self._next_beat = now  # the first beat now, not an old interval from now
        if not reply["resumed"]:
            self._drain = "no"
        if worker_id is None and not self.draining and self.winding_down():
            # Not joined while handlers of a dead id run: again as soon as they have ended.
            self._next_register = now
        elif worker_id is None and not self.draining:
            # Asked to join and given no id: ask again, but not in a tight loop.
            self._next_register = now + self._register_backoff()
        else:
            self._register_failures = 0
        if reply["resumed"]:
            fx.append(Log("info", f"reconnected and resumed as {worker_id}"))
        elif worker_id is not None:
            fx.append(Log("info", f"joined the cluster as {worker_id} ({self.identity.name}, "
                                  f"{_count(self.options.slots, 'slot')}, heartbeat every "
                                  f"{self.heartbeat_interval:.2f}s)"))
        held, self._held = self._held, []
        for assignment in held:
            fx += self._offer(assignment, now)
        return fx + self._deliveries(now)

    def _on_begun(self, key: tuple[str, int], reply: Any, now: float) -> list[Effect]:
        """The answer to `begin`: run the handler with its context, or free the slot."""
        slot = self._slots.get(key)
        if slot is None or slot.running:
            return []  # refused meanwhile, or a repeat's answer
        context = reply.get("context") if isinstance(reply, dict) else None
        if not isinstance(reply, dict) or "error" in reply or not isinstance(
                context, (dict, type(None))):
            del self._slots[key]
            why = error_message(reply) or str(reply)[:200]
            return [Log("warning", f"begin {key[0]} refused: {why}")] + self._fill(now)
        return self._begun(key, context, now) + self._fill(now)

    def _on_worked(self, request: _Request, reply: Any, now: float) -> list[Effect]:
        """The answer to a `work` frame: its results are delivered (or refused, all of
        them), and each assignment it asked to begin runs, or frees its slot."""
        for key in request.results:
            self._drop_result(key)
        contexts = reply.get("contexts") if isinstance(reply, dict) else None
        if (not isinstance(contexts, list) or len(contexts) != len(request.begins)
                or not all(isinstance(c, (dict, type(None))) for c in contexts)):
            what = f"{_count(len(request.results), 'result')} and " \
                   f"{_count(len(request.begins), 'begin')} of {request.key}"
            fx: list[Effect] = [_result_refused(what, reply if error_message(reply) else
                                                {"error": f"bad answer: {str(reply)[:200]}"})]
            for key in request.begins:
                slot = self._slots.get(key)
                if slot is not None and not slot.running:
                    del self._slots[key]
            return fx + self._fill(now)
        fx = []
        for key, context in zip(request.begins, contexts, strict=True):
            fx += self._begun(key, context, now)
        return fx + self._started(request, reply, now) + self._fill(now)

    def _started(self, request: _Request, reply: Any, now: float) -> list[Effect]:
        """Tasks the server started for a `work` frame's free slots (`take`): they run at
        once, each in a slot, like an assignment whose `begin` was answered."""
        started = reply.get("started") if isinstance(reply, dict) else None
        if not request.take or not isinstance(started, list):
            return []
        fx: list[Effect] = []
        for item in started[:request.take]:
            if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str)
                    or isinstance(item[1], bool) or not isinstance(item[1], int)
                    or not isinstance(item[2], dict)):
                fx.append(Log("warning", f"ignoring a malformed started task: "
                                         f"{str(item)[:200]}"))
                continue
            key = (item[0], item[1])
            if key in self._seen or key in self._slots:
                continue
            self._seen[key] = None
            self._slots[key] = _Slot(Assignment(request.key, *key), asked=True)
            fx += self._begun(key, item[2], now)
        return fx

    def _begun(self, key: tuple[str, int], context: dict | None, now: float) -> list[Effect]:
        """The server's answer to beginning an assignment: its context (run the handler),
        or None (stale: moved or cancelled meanwhile; its slot is free)."""
        slot = self._slots.get(key)
        if slot is None or slot.running:
            return []  # refused meanwhile, or a repeat's answer
        if context is None:
            del self._slots[key]
            return []
        slot.context = context
        slot.timeout = _seconds(context.get("timeout"))
        if slot.timeout is not None:
            slot.deadline = now + slot.timeout
        if slot.assignment.worker_id in self._dead and slot.cancelled_at is None:
            slot.cancelled_at = now  # begun just before its id was declared dead
        fx: list[Effect] = [Run(slot.assignment, context)]
        if slot.cancelled_at is not None:
            fx.append(Cancel(slot.assignment))  # the server cancelled it before it started
        return fx

    def _on_drain_answer(self, worker_id: str, reply: Any, now: float) -> list[Effect]:
        self._drain = "done"
        error = error_message(reply)
        if error is None:
            return [Log("info", f"draining {worker_id}: finishing running tasks, then leaving")]
        if reply.get("status") == 409:
            return []  # already draining; the removal follows
        # Unknown or already gone: nothing to leave.
        return [Log("info", f"drain of {worker_id}: {error}")] + self._retire(worker_id, now)

    # ------------------------------------------------------------------ server messages

    def assigned(self, data: Any, now: float) -> list[Effect]:
        """An `assign` message: each task is queued for a slot, held or refused."""
        tasks = parse_assign(data)
        if tasks is None:
            return [Log("warning", f"ignoring a malformed assignment: {str(data)[:200]}")]
        worker_id, pairs = tasks
        fx: list[Effect] = []
        for task_id, lease in pairs:
            key = (task_id, lease)
            if key in self._seen:
                continue  # sent again after a reconnect; already handled
            self._seen[key] = None
            if len(self._seen) > SEEN_MEMORY:
                self._seen.popitem(last=False)
            fx += self._offer(Assignment(worker_id, task_id, lease), now)
        return fx + self._fill(now)

    def cancelled(self, data: Any, now: float) -> list[Effect]:
        """A `cancel` message: the attempt under that lease timed out on the server."""
        ref = parse_task_ref(data)
        if ref is None:
            return [Log("warning", f"ignoring a malformed cancel: {str(data)[:200]}")]
        worker_id, task_id, lease = ref
        slot = self._slots.get((task_id, lease))
        if slot is None or slot.assignment.worker_id != worker_id or slot.cancelled_at is not None:
            return []  # returned already, or cancelled here first
        slot.cancelled_at = now
        fx: list[Effect] = [Log("warning", f"{slot.label()}: the server cancelled it (past its "
                                           "time limit there); cancelling its handler")]
        if slot.running:
            fx.append(Cancel(slot.assignment))
        return fx

    def left(self, data: Any, now: float) -> list[Effect]:
        """A `left` message: an id of ours was declared dead, or removed after a drain."""
        if not isinstance(data, dict) or not isinstance(data.get("worker_id"), str):
            return []
        worker_id, status = data["worker_id"], data.get("status")
        if status == "dead":
            return self._declared_dead(worker_id, now)
        if status == "removed" and worker_id == self.worker_id:
            # Drained (by us or from the dashboard): no new id; exit once the work ends.
            self.removed = self.draining = True
            return ([Log("info", f"{worker_id} drained: it left the ring")]
                    + self._retire(worker_id, now))
        return []

    # ------------------------------------------------------------------ heartbeats

    def beat(self, now: float) -> list[Effect]:
        """A heartbeat, if one is due."""
        if not self.registered or self.worker_id is None or now < self._next_beat:
            return []
        self._next_beat = now + self.heartbeat_interval
        rid = self._request("heartbeat", self.worker_id, now)
        return [Send(rid, "heartbeat", {"worker_id": self.worker_id})]

    # ------------------------------------------------------------------ handlers

    def finished(self, assignment: Assignment, ok: bool, value: object,
                 now: float) -> list[Effect]:
        """A handler returned (even one cancelled long ago: the server rejects its outcome
        and frees the slot it counted as stuck). Its slot takes the next assignment."""
        slot = self._slots.pop(assignment.key, None)
        # A failure's traceback travels beside its message (`result`'s optional field).
        trace = None if ok else getattr(value, "traceback", None)
        if not ok and slot is not None and slot.timed_out_here:
            # This clock ran out before the server's did (its monitor may lag): the failure
            # says why, as the server's own timeout would.
            value = f"timed out after {slot.timeout:g} s on the worker ({value})"
        size = len(json.dumps(value)) + (len(json.dumps(trace)) if trace else 0)
        if size > self._max_result:
            # The server would drop the connection over it, again after every reconnect.
            ok, value, trace = False, (f"result too large to send: {size} bytes "
                                       f"(the server accepts about {self._max_result})"), None
        result = {**assignment.ref(), "ok": ok, "value": str(value) if not ok else value}
        if trace:
            result["traceback"] = trace
        self._results[assignment.key] = result
        self._sizes[assignment.key] = size
        if self._batched or not self.registered or now < self._pause_until:
            return self._fill(now)  # batched: goes in the next `work` frame
        return [self._send_result(assignment.key, now)] + self._fill(now)

    def abandoned(self, assignment: Assignment, now: float) -> list[Effect]:
        """A handler cut short by a forced exit: like a crash, nothing is reported."""
        self._slots.pop(assignment.key, None)
        return []

    # ------------------------------------------------------------------ signals

    def signal(self, name: str, now: float) -> list[Effect]:
        """The first SIGTERM/SIGINT drains; a second one exits at once."""
        self._signals += 1
        if self._signals > 1:
            self._force(1, f"a second signal ({name})")
            return []
        self.draining = True
        if not self.registered and self._drain_deadline is None:
            self._drain_deadline = now + self.options.drain_grace
        running = sum(1 for slot in self._slots.values() if slot.asked)
        fx: list[Effect] = [Log("info", f"{name}: draining ({running} task(s) running); a "
                                        "second signal exits at once")]
        return fx + self._refuse_queued("draining", now)

    def parent_gone(self, now: float) -> list[Effect]:
        self._force(0, "the server process that started this worker is gone")
        return []

    # ------------------------------------------------------------------ internals

    def _time_limits(self, now: float) -> list[Effect]:
        """Cancel what ran past its time limit; every slot stuck: take no more work."""
        fx: list[Effect] = []
        for slot in self._slots.values():
            if (slot.deadline is not None and slot.cancelled_at is None
                    and now >= slot.deadline):
                slot.cancelled_at, slot.timed_out_here = now, True
                fx += [Log("warning", f"{slot.label()} timed out after {slot.timeout:g} s on "
                                      "this worker; cancelling its handler"),
                       Cancel(slot.assignment)]
        for slot in self._slots.values():
            dead = slot.assignment.worker_id in self._dead
            if self._is_stuck(slot, now) and (dead or not self.registered):
                why = (f"after {slot.assignment.worker_id} was declared dead" if dead
                       else "without a registered connection")
                self._force(EXIT_STUCK, f"{slot.label()} ignored its cancellation {why}; "
                                        f"exiting with status {EXIT_STUCK} so that it stops "
                                        "(the server counts it only until its time limit "
                                        "plus a grace)")
        if self._stuck_since is None and self.stuck(now) >= self.options.slots:
            self._stuck_since = now
            stuck = ", ".join(slot.label() for slot in list(self._slots.values())[:3])
            slots = self.options.slots
            which = "its only slot is" if slots == 1 else f"all {slots} slots are"
            fx.append(Log("error", f"{which} stuck in handlers that ignored their "
                                   f"cancellation ({stuck}); taking no more work and exiting "
                                   f"with status {EXIT_STUCK} so that a supervisor restarts "
                                   "this process"))
            fx += self._refuse_queued("all its slots are stuck", now)
        return fx

    def _is_stuck(self, slot: _Slot, now: float) -> bool:
        return (slot.running and slot.cancelled_at is not None
                and now >= slot.cancelled_at + self.options.cancel_grace)

    def _exit_decision(self, now: float) -> list[Effect] | None:
        if self._forced is not None:
            status, reason, notice = self._forced
            return [Log("warning", f"exiting at once: {reason}"),
                    Exit(status, cancel=True, notice=notice)]
        if self._stuck_since is not None:
            # Said so in one line already; first the refusals, so the server moves that
            # work now (else it does once it finds the connection closed).
            if (not self._refusals or not self.registered
                    or now >= self._stuck_since + self.options.request_timeout):
                return [Exit(EXIT_STUCK, cancel=True)]
            return None
        if self._slots:
            return None
        if self.removed:
            return [Log("info", "drained and removed from the ring; exiting"), Exit(0)]
        if not self.draining:
            return None
        if not self._results and (self.worker_id is None or not self.registered):
            # Never joined, declared dead while draining, or not connected: there is nothing
            # to hand over (without a connection, the server moves this worker's queued
            # tasks when it declares it dead).
            return [Log("info", "drained; exiting"), Exit(0)]
        if (not self.registered and self._drain_deadline is not None
                and now > self._drain_deadline):
            return [Log("warning", f"could not reach the server to leave the ring; exiting "
                                   f"with {len(self._results)} result(s) undelivered (the "
                                   "server moves those tasks when it declares this worker "
                                   "dead)"), Exit(0)]
        return None

    def _force(self, status: int, reason: str, notice: str | None = None) -> None:
        if self._forced is None:
            self._forced = (status, reason, notice)

    def _needs_registration(self) -> bool:
        """A new connection, or declared dead (join again): unless a request is out. While
        draining, a new connection registers only to hand in results."""
        return self._register_rid is None and (
            not self.registered
            or (self.worker_id is None and not self.draining and not self.winding_down()))

    def _register(self, now: float) -> Send:
        rid = self._request("register", None, now)
        self._register_rid = rid
        return Send(rid, "register", {
            "session": self.identity.session, "name": self.identity.name,
            "host": self.identity.host, "pid": self.identity.pid,
            "slots": self.options.slots, "resume": self.worker_id,
            "steps": None if self.options.steps is None else list(self.options.steps),
            "tags": list(self.options.tags),
            "definitions": (None if self.options.definitions is None
                            else list(self.options.definitions)),
            "join": not self.draining and not self.winding_down(),
            "spawn_id": self.options.spawn_id,
            # What it still runs, and the ids it may run it under: the server counts these
            # handlers in their steps' limits, and no longer counts any other of those ids'.
            "running": [[slot.assignment.worker_id, *slot.assignment.key]
                        for slot in self._slots.values() if slot.running],
            "ids": list(dict.fromkeys([*self._ids, *self._dead])),
        })

    def _deliveries(self, now: float) -> list[Effect]:
        """Registered: what waits for a connection goes out (each once at a time)."""
        sending = {(r.event, r.key) for r in self._inflight.values()}
        fx: list[Effect] = []
        if (self.draining and not self.removed and self._drain == "no"
                and self.worker_id is not None):
            self._drain = "sent"
            rid = self._request("drain", self.worker_id, now)
            fx.append(Send(rid, "drain", {"worker_id": self.worker_id}))
        for key, payload in self._refusals.items():
            if ("refuse", key) not in sending:
                fx.append(Send(self._request("refuse", key, now), "refuse", payload))
        if not self._batched:
            for key in self._results:
                if ("result", key) not in sending:
                    fx.append(self._send_result(key, now))
        return fx + self._fill(now)

    def _send_result(self, key: tuple[str, int], now: float) -> Send:
        return Send(self._request("result", key, now), "result", self._results[key])

    def _fill(self, now: float) -> list[Effect]:
        """Free slots take queued assignments, oldest first; once registered (and not
        pausing), each slot not yet begun asks the server to `begin` its assignment."""
        # Slots offered to the server in a `work` frame still out stay free for what it
        # starts there.
        reserved = sum(r.take for r in self._inflight.values())
        while (self._queued and len(self._slots) + reserved < self.options.slots
               and self._stuck_since is None):
            key, assignment = self._queued.popitem(last=False)
            self._slots[key] = _Slot(assignment)
        if not self.registered or now < self._pause_until:
            return []
        asking = {r.key for r in self._inflight.values() if r.event == "begin"}
        asking.update(key for r in self._inflight.values() for key in r.begins)
        fx: list[Effect] = []
        for key, slot in list(self._slots.items()):
            if slot.running or key in asking:
                continue
            assignment = slot.assignment
            if assignment.worker_id != self.worker_id:
                del self._slots[key]
                fx += self._refuse(assignment, f"{assignment.worker_id} is retired", now)
            elif self.draining and not slot.asked:
                del self._slots[key]
                fx += self._refuse(assignment, "draining", now)
            elif not self._batched:
                # Asked again after a lost answer: the server may have started it already,
                # and answers a repeat with the same context.
                slot.asked = True
                fx.append(Send(self._request("begin", key, now), "begin", assignment.ref()))
        if (len(self._slots) + reserved < self.options.slots and self._queued
                and self._stuck_since is None):
            return fx + self._fill(now)  # refusals freed slots
        return fx + self._work(now)

    def _work(self, now: float) -> list[Effect]:
        """Batched (protocol 2): unless a `work` frame is out, one goes per worker id with
        every result not yet acknowledged and every slot's begin. While one is out, what
        finishes or gets a slot waits for its answer and goes in the next: the round trip
        coalesces them (under load, a frame carries a slot's worth), while a lone step is
        sent at once."""
        if (not self._batched or not self.registered or now < self._pause_until
                or any(r.event == "work" for r in self._inflight.values())):
            return []
        frames: dict[str, tuple[list, list]] = {}
        for key, payload in self._results.items():
            frames.setdefault(payload["worker_id"], ([], []))[0].append(key)
        for key, slot in self._slots.items():
            if not slot.running:
                slot.asked = True
                frames.setdefault(slot.assignment.worker_id, ([], []))[1].append(key)
        fx: list[Effect] = []
        for worker_id, (results, begins) in frames.items():
            fx += self._frames(worker_id, results, begins, now)
        return fx

    def _free_slots(self, worker_id: str) -> int:
        """Slots the server may fill at once with tasks it starts for a frame of
        `worker_id`: the free ones, if that id is current and the process takes work."""
        if (worker_id != self.worker_id or self.draining or self._stuck_since is not None
                or self._queued):
            return 0
        return max(0, self.options.slots - len(self._slots))

    def _frames(self, worker_id: str, results: list[tuple[str, int]],
                begins: list[tuple[str, int]], now: float) -> list[Effect]:
        """`work` frames for one worker id: at most MAX_BATCH entries a list, and results
        whose values add up to at most what one message may hold (one each, at least).
        The first offers the free slots (`take`): in memory, the server starts the tasks
        these results make ready for this process at once and answers their contexts,
        instead of an `assign` and a `begin` each."""
        fx: list[Effect] = []
        take = self._free_slots(worker_id)
        while results or begins or not fx:
            asked, begins = begins[:MAX_BATCH], begins[MAX_BATCH:]
            taken, room = [], self._max_result - sum(_entry_bytes(key) for key in asked)
            while results and len(taken) < MAX_BATCH:
                cost = self._sizes.get(results[0], 0) + _entry_bytes(results[0])
                if taken and cost > room:
                    break
                room -= cost
                taken.append(results.pop(0))
            rid = self._next_rid()
            self._inflight[rid] = _Request("work", worker_id, self._connection,
                                           now + self.options.request_timeout,
                                           tuple(taken), tuple(asked), take)
            fx.append(Send(rid, "work", {
                "worker_id": worker_id,
                "results": [_result_entry(key, self._results[key]) for key in taken],
                "begin": [list(key) for key in asked], "take": take}))
            take = 0
        return fx

    def _drop_result(self, key: tuple[str, int]) -> None:
        self._results.pop(key, None)
        self._sizes.pop(key, None)

    def _offer(self, assignment: Assignment, now: float) -> list[Effect]:
        """Decide on one new assignment: queue it for a slot, hold it, or refuse it."""
        if self._stuck_since is not None:
            return self._refuse(assignment, "all its slots are stuck", now)
        if self.draining:
            return self._refuse(assignment, "draining", now)
        if assignment.worker_id == self.worker_id:
            self._queued[assignment.key] = assignment
            return []
        if self._register_rid is not None:
            # The answer on its way may name this id (the server assigns as it joins us).
            self._held.append(assignment)
            return []
        return self._refuse(assignment, f"{assignment.worker_id} is not this process's id",
                            now)

    def _refuse(self, assignment: Assignment, reason: str, now: float) -> list[Effect]:
        """Tell the server this process will not run `assignment`, so it moves it now."""
        key = assignment.key
        self._refusals[key] = {**assignment.ref(), "reason": reason}
        fx: list[Effect] = [Log("info", f"refusing {assignment.task_id} (lease "
                                        f"{assignment.lease}, {assignment.worker_id}): "
                                        f"{reason}")]
        if self.registered and now >= self._pause_until:
            fx.append(Send(self._request("refuse", key, now), "refuse", self._refusals[key]))
        return fx

    def _refuse_queued(self, reason: str, now: float) -> list[Effect]:
        """Refuse what waits for a slot or a registration, and what holds a slot without
        having asked to begin (the server cannot have started it)."""
        unasked = [key for key, slot in self._slots.items() if not slot.asked]
        waiting = list(self._queued.values()) + [self._slots.pop(k).assignment for k in unasked]
        self._queued.clear()
        held, self._held = self._held, []
        fx: list[Effect] = []
        for assignment in waiting + held:
            fx += self._refuse(assignment, reason, now)
        return fx

    def _declared_dead(self, worker_id: str, now: float) -> list[Effect]:
        if worker_id != self.worker_id:
            return []
        return self._dead_id(worker_id, now)

    def _dead_id(self, worker_id: str, now: float) -> list[Effect]:
        """The server declared `worker_id` dead (or does not know it any more): retire it,
        and cancel every handler running under it. The process joins again once they have
        returned (their results go in and are rejected, which tells the server they ended);
        a handler that ignores its cancellation past `cancel_grace` ends the process."""
        self._dead = [*self._dead, worker_id][-IDS_REMEMBERED:]
        fx: list[Effect] = []
        cancelled = 0
        for slot in self._slots.values():
            if slot.assignment.worker_id == worker_id and slot.running:
                cancelled += 1
                if slot.cancelled_at is None:
                    slot.cancelled_at = now
                    fx.append(Cancel(slot.assignment))
        action = "leaving" if self.draining else "joining again under a new id"
        if cancelled:
            action = (f"cancelling the {_count(cancelled, 'handler')} it runs under that id, "
                      f"then {action}")
        return ([Log("warning", f"the server declared {worker_id} dead (missed heartbeats); "
                                f"{action}")] + fx + self._retire(worker_id, now))

    def _retire(self, worker_id: str, now: float) -> list[Effect]:
        """`worker_id` is no longer ours: what waits to run under it is refused. (Held
        assignments wait for a registration's answer, which may name them: they stay; a
        slot that asked to begin runs if the answer comes, or is refused if asked again.)"""
        if self.worker_id != worker_id:
            return []
        self.worker_id = None
        unasked = [key for key, slot in self._slots.items() if not slot.asked]
        waiting = list(self._queued.values()) + [self._slots.pop(k).assignment for k in unasked]
        self._queued.clear()
        fx: list[Effect] = []
        for assignment in waiting:
            fx += self._refuse(assignment, f"{worker_id} is retired", now)
        return fx

    def _register_backoff(self) -> float:
        delay = reconnect_delay(self._register_failures, self.options.reconnect_delay,
                                self.options.reconnect_delay_max, self._rng)
        self._register_failures += 1
        return delay

    def _next_rid(self) -> int:
        self._rids += 1
        return self._rids

    def _request(self, event: str, key: Any, now: float) -> int:
        rid = self._next_rid()
        self._inflight[rid] = _Request(event, key, self._connection,
                                       now + self.options.request_timeout)
        return rid

    def _expire(self, now: float) -> None:
        """Requests unanswered for request_timeout go out again (the server ignores repeats,
        and answers a repeated `begin` with the same context)."""
        for rid in [rid for rid, r in self._inflight.items() if r.deadline <= now]:
            request = self._inflight.pop(rid)
            if request.take:
                self._late[rid] = request
                while len(self._late) > LATE_MEMORY:
                    self._late.popitem(last=False)
            if request.event == "register":
                self._register_rid = None
            elif request.event == "drain" and self._drain == "sent":
                self._drain = "no"
