"""The worker session (scheduler/remote/session.py): every decision of an `orderflow worker`
process, with a fake clock, no sockets and no threads."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from scheduler.remote.effects import Assignment, Cancel, Connect, Exit, Log, Run, Send
from scheduler.remote.options import Identity, WorkerOptions, reconnect_delay
from scheduler.remote.protocol import EXIT_REFUSED, EXIT_STUCK, MESSAGE_MARGIN
from scheduler.remote.session import WorkerSession

OPTIONS = WorkerOptions(server="http://127.0.0.1:9", slots=2, reconnect_delay=0.5,
                        reconnect_delay_max=5.0, request_timeout=5.0, drain_grace=5.0,
                        cancel_grace=1.0)
IDENTITY = Identity(session="s-1", name="box-42", host="box", pid=42)
START = 1000.0
# What the server's `begin` answers (the fields the session reads; the shell reads the rest).
CONTEXT = {"order_id": "o-1", "step": "payment", "attempt": 1, "timeout": 10.0}


class Worker:
    """A session and a fake clock, with shortcuts for what the server would answer."""

    def __init__(self, seed: int = 1, **options):
        self.now = START
        self.session = WorkerSession(dataclasses.replace(OPTIONS, **options), IDENTITY,
                                     random.Random(seed))
        self.asked: dict[tuple[str, int], Send] = {}  # the latest `begin` per assignment

    def record(self, effects: list) -> list:
        for send in sends(effects, "begin"):
            self.asked[(send.payload["task_id"], send.payload["lease"])] = send
        return effects

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tick(self) -> list:
        effects = self.session.tick(self.now)
        if not effects:
            # Nothing to do now: the main loop may sleep, never spin.
            assert self.session.wait_hint(self.now) > 0
        return self.record(effects)

    def connect(self) -> Send:
        """Connect; returns the registration the session sends."""
        assert self.tick() == [Connect(self.session.url)]
        (register,) = sends(self.session.connected(self.now), "register")
        return register

    def answer(self, send: Send, reply) -> list:
        return self.record(self.session.answered(send.rid, reply, self.now))

    def join(self, worker_id: str = "p-a-1", **welcome_fields) -> list:
        """Connect and register; returns the effects of the welcome."""
        return self.answer(self.connect(), welcome(worker_id, **welcome_fields))

    def assign(self, worker_id: str, *tasks: tuple[str, int]) -> list:
        data = {"worker_id": worker_id, "tasks": [list(t) for t in tasks]}
        return self.record(self.session.assigned(data, self.now))

    def begin(self, assignment: Assignment, **context) -> list:
        """The server answers the assignment's latest `begin` with a context."""
        order_id = assignment.task_id.partition(":")[0]
        reply = {"context": {**CONTEXT, "order_id": order_id, **context}}
        return self.answer(self.asked[assignment.key], reply)

    def finish(self, assignment: Assignment, ok: bool = True, value="done") -> list:
        return self.record(self.session.finished(assignment, ok, value, self.now))

    def run(self, assignment: Assignment, value="done") -> list:
        """Begin the assignment (its `begin` went out) and finish it; returns the effects
        of finishing."""
        assert [e.assignment for e in self.begin(assignment) if isinstance(e, Run)] == [
            assignment]
        return self.finish(assignment, True, value)

    def exit_of(self, effects: list) -> Exit | None:
        return next((e for e in effects if isinstance(e, Exit)), None)


def welcome(worker_id: str | None, resumed: bool = False, interval: float = 0.5,
            max_bytes: int = 1_000_000, protocol: int | None = None) -> dict:
    reply = {"worker_id": worker_id, "resumed": resumed, "heartbeat_interval": interval,
             "heartbeat_timeout": 4 * interval, "chaos": {}, "max_message_bytes": max_bytes}
    return reply if protocol is None else {**reply, "protocol": protocol}


def sends(effects: list, event: str | None = None) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and event in (None, e.event)]


def begins(effects: list) -> list[Assignment]:
    """The assignments whose `begin` the effects send (each has taken a slot)."""
    return [Assignment(**s.payload) for s in sends(effects, "begin")]


def runs(effects: list) -> list[Assignment]:
    return [e.assignment for e in effects if isinstance(e, Run)]


def cancels(effects: list) -> list[Assignment]:
    return [e.assignment for e in effects if isinstance(e, Cancel)]


def logged(effects: list) -> str:
    return "\n".join(e.message for e in effects if isinstance(e, Log))


def refused(effects: list) -> list[tuple[str, str, int]]:
    return [(s.payload["worker_id"], s.payload["task_id"], s.payload["lease"])
            for s in sends(effects, "refuse")]


A1 = Assignment("p-a-1", "o-1:payment", 1)
A2 = Assignment("p-a-1", "o-2:payment", 2)


# ---------------------------------------------------------------- connecting


def test_a_new_session_connects_at_once_and_joins_on_connecting():
    worker = Worker()
    register = worker.connect()
    assert register.payload == {"session": "s-1", "name": "box-42", "host": "box", "pid": 42,
                                "slots": 2, "resume": None, "join": True,
                                "spawn_id": None, "steps": None, "tags": [],
                                "definitions": None, "running": [], "ids": []}
    assert worker.tick() == []  # one registration at a time
    effects = worker.answer(register, welcome("p-a-1"))
    assert "joined the cluster as p-a-1 (box-42, 2 slots," in logged(effects)
    assert worker.session.worker_id == "p-a-1" and worker.session.registered


def test_failed_connection_attempts_back_off_with_equal_jitter_up_to_the_cap():
    worker = Worker()
    assert worker.tick() == [Connect(OPTIONS.server)]
    waits = []
    for _ in range(6):
        effects = worker.session.connect_failed("Connection error", False, worker.now)
        assert "cannot reach http://127.0.0.1:9 (Connection error)" in logged(effects)
        started = worker.now
        while worker.tick() != [Connect(OPTIONS.server)]:
            assert worker.session.wait_hint(worker.now) > 0
            worker.advance(0.01)
        waits.append(worker.now - started)
    for failures, wait in enumerate(waits):
        ceiling = min(5.0, 0.5 * 2 ** failures)
        assert ceiling / 2 <= wait <= ceiling + 0.01, (failures, wait)


def test_the_reconnect_delay_grows_with_jitter_up_to_the_cap():
    rng = random.Random(3)
    for failures, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (50, 5.0)]:
        delays = [reconnect_delay(failures, 0.5, 5.0, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one value


def test_the_backoff_is_reset_by_a_connection():
    worker = Worker()
    for _ in range(5):
        worker.tick()
        worker.session.connect_failed("down", False, worker.now)
        worker.advance(10)
    worker.join()
    worker.session.disconnected("transport error", worker.now)
    assert worker.tick() == [Connect(OPTIONS.server)], "the first attempt after a drop is immediate"
    worker.session.connect_failed("down", False, worker.now)
    assert worker.session.wait_hint(worker.now) <= 0.5


def test_a_refused_connection_exits_with_the_refused_status_and_says_why_on_stderr():
    worker = Worker()
    worker.tick()
    worker.session.connect_failed("unauthorized: a valid token is required", True, worker.now)
    exit_ = worker.exit_of(worker.tick())
    assert exit_.status == EXIT_REFUSED
    assert "refused the connection: unauthorized" in exit_.notice
    assert "--token" in exit_.notice
    assert worker.tick() == [], "an exit is decided once"


def test_an_idle_registered_session_has_nothing_to_do_and_may_sleep():
    worker = Worker()
    worker.join()
    worker.advance(0.1)
    assert worker.tick() == []
    assert worker.session.wait_hint(worker.now) == pytest.approx(0.5)


# ---------------------------------------------------------------- registering


def test_after_a_disconnect_the_next_connection_resumes_the_current_id():
    worker = Worker()
    worker.join("p-a-1")
    effects = worker.session.disconnected("transport error", worker.now)
    assert "lost the connection to http://127.0.0.1:9 (transport error)" in logged(effects)
    assert not worker.session.registered
    register = worker.connect()
    assert register.payload["resume"] == "p-a-1" and register.payload["join"] is True
    effects = worker.answer(register, welcome("p-a-1", resumed=True))
    assert "resumed as p-a-1" in logged(effects)


def test_a_resume_the_server_refuses_retires_the_id_and_refuses_what_waited_under_it():
    worker = Worker()
    worker.join("p-a-1")
    assert begins(worker.assign("p-a-1", ("o-1:payment", 1))) == [A1]
    worker.session.disconnected("transport error", worker.now)  # its answer is lost
    effects = worker.answer(worker.connect(), welcome("p-a-2"))
    assert worker.session.worker_id == "p-a-2"
    assert refused(effects) == [("p-a-1", "o-1:payment", 1)] and begins(effects) == []
    assert worker.session.busy == 0, "its slot is free again"


def test_an_answer_to_a_registration_from_a_lost_connection_is_ignored():
    worker = Worker()
    register = worker.connect()
    worker.session.disconnected("transport error", worker.now)
    worker.connect()
    assert worker.answer(register, welcome("p-a-1")) == []
    assert worker.session.worker_id is None


def test_a_registration_refused_as_invalid_exits_with_status_2():
    worker = Worker()
    register = worker.connect()
    worker.answer(register, {"error": {"code": "validation_error", "message": "pid ..."},
                             "status": 422})
    exit_ = worker.exit_of(worker.tick())
    assert exit_.status == 2 and exit_.cancel


@pytest.mark.parametrize("reply", [
    {"error": {"code": "busy", "message": "too many registrations"}, "status": 429},
    "not an object", None, {"worker_id": 7, "resumed": False, "heartbeat_interval": 1},
    {"worker_id": "p-1", "resumed": False, "heartbeat_interval": -1},
    {"worker_id": "p-1", "resumed": "no", "heartbeat_interval": 1},
])
def test_a_refused_or_malformed_registration_answer_is_tried_again_after_a_backoff(reply):
    worker = Worker()
    effects = worker.answer(worker.connect(), reply)
    assert "registration refused" in logged(effects)
    assert worker.session.worker_id is None and not worker.session.registered
    assert worker.tick() == [], "not at once: that would hammer the server"
    worker.advance(0.5)
    (again,) = sends(worker.tick(), "register")
    assert again.payload["join"] is True


def test_a_registration_left_unanswered_is_sent_again_after_the_request_timeout():
    worker = Worker()
    first = worker.connect()
    worker.advance(4.9)
    assert worker.tick() == []
    worker.advance(0.2)
    (second,) = sends(worker.tick(), "register")
    assert second.rid != first.rid
    assert worker.answer(first, welcome("p-a-1")) == [], "the late answer is not used"
    worker.answer(second, welcome("p-a-2"))
    assert worker.session.worker_id == "p-a-2"


def test_a_join_answered_without_an_id_is_asked_again_but_not_at_once():
    worker = Worker()
    worker.answer(worker.connect(), welcome(None))
    assert worker.tick() == []
    worker.advance(0.5)
    assert sends(worker.tick(), "register")


# ---------------------------------------------------------------- assignments


def test_an_assignment_for_the_current_id_runs_once_even_if_sent_again():
    worker = Worker()
    worker.join("p-a-1")
    assert begins(worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))) == [A1, A2]
    assert worker.assign("p-a-1", ("o-1:payment", 1)) == []  # resent after a reconnect


def test_an_assignment_for_an_id_that_is_not_ours_is_refused_not_dropped():
    worker = Worker()
    worker.join("p-a-1")
    effects = worker.assign("p-x-9", ("o-1:payment", 4))
    assert begins(effects) == []
    (refusal,) = sends(effects, "refuse")
    assert refusal.payload == {"worker_id": "p-x-9", "task_id": "o-1:payment", "lease": 4,
                               "reason": "p-x-9 is not this process's id"}
    assert "refusing o-1:payment (lease 4, p-x-9)" in logged(effects)
    worker.answer(refusal, {"ok": True, "moved": True})
    assert sends(worker.tick(), "refuse") == [], "answered: not sent again"


def test_a_refusal_made_without_a_connection_is_sent_after_registering():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.disconnected("transport error", worker.now)
    assert sends(worker.assign("p-x-9", ("o-1:payment", 4)), "refuse") == []
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert refused(effects) == [("p-x-9", "o-1:payment", 4)]


def test_an_assignment_arriving_before_its_registration_answer_runs_under_the_id_it_names():
    # The server assigns as it joins a worker, before it answers the registration; the
    # client's threads may handle the two in either order.
    worker = Worker()
    register = worker.connect()
    assert worker.assign("p-a-1", ("o-1:payment", 1)) == []  # held
    effects = worker.answer(register, welcome("p-a-1"))
    assert begins(effects) == [A1] and refused(effects) == []


def test_an_assignment_held_for_a_registration_that_names_another_id_is_refused():
    worker = Worker()
    register = worker.connect()
    worker.assign("p-x-9", ("o-1:payment", 1))
    effects = worker.answer(register, welcome("p-a-1"))
    assert begins(effects) == [] and refused(effects) == [("p-x-9", "o-1:payment", 1)]


def test_an_assignment_held_when_the_connection_drops_is_refused_after_registering_again():
    worker = Worker()
    worker.connect()
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.disconnected("transport error", worker.now)
    register = worker.connect()
    assert register.payload["resume"] is None  # the answer naming p-a-1 was lost
    effects = worker.answer(register, welcome("p-a-2"))
    assert refused(effects) == [("p-a-1", "o-1:payment", 1)]


def test_an_id_the_server_hands_out_again_after_it_was_retired_is_worked_under():
    # A restarted server that numbers its ids afresh may hand back an id this process was
    # declared dead under: the server's answer decides which id is current.
    worker = Worker()
    worker.join("p-1")
    (beat,) = sends(worker.session.beat(worker.now), "heartbeat")
    worker.answer(beat, {"alive": False, "chaos": {}})
    worker.answer(sends(worker.tick(), "register")[0], welcome("p-2"))
    worker.session.disconnected("transport error", worker.now)  # the server restarts
    worker.answer(worker.connect(), welcome("p-1"))
    effects = worker.assign("p-1", ("o-1:payment", 1))
    assert begins(effects) == [Assignment("p-1", "o-1:payment", 1)] and refused(effects) == []


@pytest.mark.parametrize("data", [None, [], {"tasks": []}, {"worker_id": "p-a-1"},
                                  {"worker_id": "p-a-1", "tasks": [["o-1:payment"]]},
                                  {"worker_id": "p-a-1", "tasks": [["o-1:payment", "1"]]},
                                  {"worker_id": "p-a-1", "tasks": [["o-1:payment", True]]}])
def test_a_malformed_assignment_is_logged_and_ignored(data):
    worker = Worker()
    worker.join("p-a-1")
    effects = worker.session.assigned(data, worker.now)
    assert begins(effects) == [] and sends(effects) == []
    assert "ignoring a malformed assignment" in logged(effects)


# ---------------------------------------------------------------- slots


def test_an_assignment_asks_to_begin_only_once_registered_on_the_current_connection():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.disconnected("transport error", worker.now)
    assert begins(worker.assign("p-a-1", ("o-1:payment", 1))) == []
    assert worker.session.busy == 1, "it holds a slot meanwhile"
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    (begin,) = sends(effects, "begin")
    assert begin.payload == A1.ref()


def test_at_most_slots_assignments_begin_and_a_freed_slot_takes_the_oldest_waiting():
    worker = Worker(slots=2)
    worker.join("p-a-1")
    effects = worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2),
                            ("o-3:payment", 3), ("o-4:payment", 4))
    assert begins(effects) == [A1, A2]
    assert (worker.session.busy, worker.session.queued) == (2, 2)
    assert worker.tick() == [], "a full house asks for nothing more"
    effects = worker.run(A2)
    assert begins(effects) == [Assignment("p-a-1", "o-3:payment", 3)]
    assert (worker.session.busy, worker.session.queued) == (2, 1)


def test_the_answer_to_begin_runs_the_handler_with_its_context():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    effects = worker.begin(A1, attempt=2)
    assert effects == [Run(A1, {**CONTEXT, "attempt": 2})]
    assert worker.begin(A1) == [], "a repeated answer runs nothing twice"


def test_a_stale_begin_answer_frees_the_slot_and_runs_nothing():
    worker = Worker(slots=1)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))
    effects = worker.answer(worker.asked[A1.key], {"context": None})
    assert runs(effects) == [] and begins(effects) == [A2]


def test_an_error_answer_to_begin_is_logged_and_the_task_not_run():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    effects = worker.answer(worker.asked[A1.key], {
        "error": {"code": "not_found", "message": "unknown worker"}, "status": 404})
    assert runs(effects) == [] and worker.session.busy == 0
    assert "begin o-1:payment refused: unknown worker" in logged(effects)


def test_a_begin_left_unanswered_is_asked_again_and_only_the_new_answer_counts():
    worker = Worker()
    worker.join("p-a-1")
    (first,) = sends(worker.assign("p-a-1", ("o-1:payment", 1)), "begin")
    worker.advance(5.1)
    (second,) = sends(worker.tick(), "begin")
    assert second.payload == first.payload and second.rid != first.rid
    assert worker.answer(first, {"context": CONTEXT}) == []
    assert runs(worker.answer(second, {"context": CONTEXT})) == [A1]


def test_a_begin_lost_with_the_connection_is_asked_again_after_resuming():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.disconnected("transport error", worker.now)
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert begins(effects) == [A1]


# ---------------------------------------------------------------- time limits


def running(worker: Worker, *assignments: Assignment, timeout: float | None = 2.0) -> None:
    """Assign, begin and start each under p-a-1 (already joined), with that time limit."""
    worker.assign("p-a-1", *(a.key for a in assignments))
    for assignment in assignments:
        fields = {"timeout": timeout} if timeout is not None else {}
        context = {k: v for k, v in CONTEXT.items() if k != "timeout"}
        reply = {"context": {**context, **fields}}
        assert runs(worker.answer(worker.asked[assignment.key], reply)) == [assignment]


def test_an_attempt_past_its_time_limit_is_cancelled_once_and_its_outcome_still_reported():
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1, timeout=2.0)
    worker.advance(1.99)
    assert cancels(worker.tick()) == []
    worker.advance(0.01)
    effects = worker.tick()
    assert cancels(effects) == [A1] and worker.session.is_cancelled(A1.key)
    assert "order o-1 step payment attempt 1 on p-a-1 timed out after 2 s" in logged(effects)
    worker.advance(5)
    assert cancels(worker.tick()) == [], "cancelled once"
    (result,) = sends(worker.finish(A1, False, "cancelled"), "result")
    # Sent before the server's own timeout fired (its monitor may lag): it says why.
    assert result.payload == {**A1.ref(), "ok": False,
                              "value": "timed out after 2 s on the worker (cancelled)"}
    assert worker.session.busy == 0


def test_a_failures_traceback_goes_with_its_result_and_a_plain_message_goes_without():
    from scheduler.steps.failure import Failure

    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1, A2, timeout=2.0)
    failure = Failure("RuntimeError: crashed", "Traceback ...\nRuntimeError: crashed")
    (result,) = sends(worker.finish(A1, False, failure), "result")
    assert result.payload == {**A1.ref(), "ok": False, "value": "RuntimeError: crashed",
                              "traceback": "Traceback ...\nRuntimeError: crashed"}
    assert type(result.payload["value"]) is str  # plain JSON on the wire
    # One that ran past this worker's clock keeps its traceback under the new message.
    worker.advance(2.0)
    worker.tick()
    (result,) = sends(worker.finish(A2, False, failure), "result")
    assert result.payload["value"] == "timed out after 2 s on the worker (RuntimeError: crashed)"
    assert result.payload["traceback"] == "Traceback ...\nRuntimeError: crashed"
    worker.assign("p-a-1", ("o-3:payment", 3))
    (result,) = sends(worker.run(Assignment("p-a-1", "o-3:payment", 3), "ok"), "result")
    assert "traceback" not in result.payload
    declined = Assignment("p-a-1", "o-4:payment", 4)
    running(worker, declined, timeout=None)
    (result,) = sends(worker.finish(declined, False, "gateway answered 503"), "result")
    assert result.payload == {**declined.ref(), "ok": False, "value": "gateway answered 503"}


def test_an_attempt_without_a_time_limit_is_never_cancelled_here():
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1, timeout=None)
    worker.advance(10_000)
    assert cancels(worker.tick()) == []


@pytest.mark.parametrize("timeout", [0, -1, "2", True, float("inf")])
def test_a_time_limit_that_is_not_a_positive_number_is_ignored(timeout):
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1, timeout=timeout)
    worker.advance(100)
    assert cancels(worker.tick()) == []


def test_the_servers_cancel_cancels_the_running_handler_once():
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1, timeout=60.0)
    message = {"worker_id": "p-a-1", "task_id": "o-1:payment", "lease": 1}
    effects = worker.session.cancelled(message, worker.now)
    assert cancels(effects) == [A1]
    assert "order o-1 step payment attempt 1 on p-a-1: the server cancelled it" in logged(effects)
    assert worker.session.cancelled(message, worker.now) == []
    worker.advance(60)
    assert cancels(worker.tick()) == [], "not again when its own clock runs out"
    (result,) = sends(worker.finish(A1, False, "cancelled"), "result")
    assert result.payload["value"] == "cancelled", "the server knows why already"


@pytest.mark.parametrize("message", [
    {"worker_id": "p-a-1", "task_id": "o-1:payment", "lease": 2},  # another lease
    {"worker_id": "p-x-9", "task_id": "o-1:payment", "lease": 1},  # another id
    {"worker_id": "p-a-1", "task_id": "o-9:payment", "lease": 1},  # not here
])
def test_a_cancel_for_an_attempt_not_running_here_is_ignored(message):
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1)
    assert worker.session.cancelled(message, worker.now) == []
    assert not worker.session.is_cancelled(A1.key)


@pytest.mark.parametrize("message", [None, [], {"worker_id": "p-a-1", "task_id": "t"},
                                     {"worker_id": "p-a-1", "task_id": "t", "lease": "1"}])
def test_a_malformed_cancel_is_logged_and_ignored(message):
    worker = Worker()
    worker.join("p-a-1")
    running(worker, A1)
    effects = worker.session.cancelled(message, worker.now)
    assert cancels(effects) == [] and "ignoring a malformed cancel" in logged(effects)


def test_a_cancel_before_the_begin_answer_starts_the_handler_cancelled():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    message = {"worker_id": "p-a-1", "task_id": "o-1:payment", "lease": 1}
    assert cancels(worker.session.cancelled(message, worker.now)) == []  # nothing runs yet
    effects = worker.begin(A1)
    assert runs(effects) == [A1] and cancels(effects) == [A1]


def test_a_cancelled_handler_that_returns_within_the_grace_frees_its_slot_for_the_next():
    worker = Worker(slots=1, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, timeout=2.0)
    worker.assign("p-a-1", A2.key)
    worker.advance(2.0)
    assert cancels(worker.tick()) == [A1]
    worker.advance(0.9)
    assert worker.session.stuck(worker.now) == 0 and worker.exit_of(worker.tick()) is None
    assert begins(worker.finish(A1, False, "cancelled")) == [A2]


def test_when_every_slot_is_stuck_the_process_refuses_what_waits_and_exits_with_status_4():
    worker = Worker(slots=2, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, A2, timeout=2.0)
    worker.assign("p-a-1", ("o-3:payment", 3))  # waits for a slot
    worker.advance(2.0)
    assert cancels(worker.tick()) == [A1, A2]
    worker.advance(0.99)
    assert worker.tick() == [] and worker.session.wait_hint(worker.now) <= 0.01
    worker.advance(0.01)
    effects = worker.tick()
    assert worker.session.stuck(worker.now) == 2
    assert "all 2 slots are stuck in handlers that ignored their cancellation" in logged(
        effects)
    assert f"exiting with status {EXIT_STUCK}" in logged(effects)
    (refusal,) = sends(effects, "refuse")
    assert refusal.payload["task_id"] == "o-3:payment"
    assert refusal.payload["reason"] == "all its slots are stuck"
    assert worker.exit_of(effects) is None, "first the server hears of the refusal"
    assert refused(worker.assign("p-a-1", ("o-4:payment", 4))) == [
        ("p-a-1", "o-4:payment", 4)], "no new work"
    worker.answer(refusal, {"ok": True, "moved": True})
    assert worker.exit_of(worker.tick()) is None, "o-4's refusal is not answered yet"
    worker.advance(5.0)  # ...and never is: the exit does not wait for it any longer
    assert worker.exit_of(worker.tick()) == Exit(EXIT_STUCK, cancel=True)
    assert worker.tick() == []


def test_all_slots_stuck_without_a_connection_exits_at_once():
    worker = Worker(slots=1, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, timeout=2.0)
    worker.session.disconnected("transport error", worker.now)
    worker.advance(2.0)
    assert cancels(worker.tick()) == [A1]
    worker.session.connect_failed("down", False, worker.now)
    worker.advance(1.0)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(EXIT_STUCK, cancel=True)
    assert "its only slot is stuck in handlers" in logged(effects)


def test_a_stuck_slot_among_free_ones_only_takes_that_slot():
    worker = Worker(slots=2, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, A2, timeout=2.0)
    worker.finish(A2)
    worker.advance(2.0)
    assert cancels(worker.tick()) == [A1]
    worker.advance(1.0)
    assert worker.session.stuck(worker.now) == 1 and worker.exit_of(worker.tick()) is None
    effects = worker.assign("p-a-1", ("o-3:payment", 3), ("o-4:payment", 4))
    assert begins(effects) == [Assignment("p-a-1", "o-3:payment", 3)]
    assert worker.session.queued == 1


# ---------------------------------------------------------------- results


def test_a_result_is_sent_at_once_and_forgotten_once_acknowledged():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    (result,) = sends(worker.run(A1, {"paid": True}), "result")
    assert result.payload == {**A1.ref(), "ok": True, "value": {"paid": True}}
    assert worker.tick() == [], "in flight: not sent twice"
    worker.answer(result, {"ok": True})
    assert worker.session.unacknowledged == []


def test_a_result_not_acknowledged_before_a_disconnect_is_sent_again_after_registering():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    (lost,) = sends(worker.run(A1), "result")
    worker.session.disconnected("transport error", worker.now)
    assert worker.answer(lost, {"ok": True}) == []  # no answer comes on a dead connection
    assert worker.session.unacknowledged == [A1.key]
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    (again,) = sends(effects, "result")
    assert again.payload == lost.payload
    worker.answer(again, {"ok": True})
    assert worker.session.unacknowledged == []


def test_a_result_finished_while_disconnected_waits_for_the_registration():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.begin(A1)
    worker.session.disconnected("transport error", worker.now)
    assert sends(worker.finish(A1)) == []
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert [s.payload["task_id"] for s in sends(effects, "result")] == ["o-1:payment"]


def test_a_result_left_unanswered_is_sent_again_after_the_request_timeout():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    (first,) = sends(worker.run(A1), "result")
    worker.advance(5.1)
    (second,) = sends(worker.tick(), "result")
    assert second.payload == first.payload and second.rid != first.rid


def test_a_result_the_shell_could_not_send_goes_out_again_after_a_pause():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    (first,) = sends(worker.run(A1), "result")
    worker.session.unanswered(first.rid, worker.now)
    assert worker.tick() == [], "not in a tight loop"
    worker.advance(0.5)
    assert sends(worker.tick(), "result")


def test_a_result_too_big_for_the_server_becomes_a_failed_attempt():
    worker = Worker()
    worker.join("p-a-1", max_bytes=10_000)
    worker.assign("p-a-1", ("o-1:payment", 1))
    (result,) = sends(worker.run(A1, "x" * 20_000), "result")
    assert result.payload["ok"] is False
    assert result.payload["value"].startswith("result too large to send: 20002 bytes")


def test_an_error_answer_to_a_result_is_logged_and_the_result_dropped():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    (result,) = sends(worker.run(A1), "result")
    effects = worker.answer(result, {"error": {"code": "x", "message": "bad"}, "status": 422})
    assert "result for o-1:payment lease 1 refused: bad" in logged(effects)
    # The scheduler has moved that step on (a restart, a failover, a time limit): expected.
    assert [e.level for e in effects if isinstance(e, Log)] == ["warning"]
    assert worker.session.unacknowledged == []


# ---------------------------------------------------------------- batched (protocol 2)


def batched(slots: int = 2, **welcome_fields) -> Worker:
    """A worker joined to a server that answers `work` frames."""
    worker = Worker(slots=slots)
    worker.join("p-a-1", protocol=2, **welcome_fields)
    return worker


def work_of(effects: list) -> Send:
    (frame,) = sends(effects, "work")
    return frame


def worked(contexts: list) -> dict:
    return {"contexts": contexts}


def test_a_server_that_does_not_say_protocol_2_gets_one_begin_and_result_each():
    worker = Worker()
    worker.join("p-a-1")  # an older server: no "protocol" in its welcome
    effects = worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))
    assert begins(effects) == [A1, A2] and sends(effects, "work") == []


def test_batched_assignments_that_take_slots_ask_to_begin_in_one_frame():
    worker = batched(slots=2)
    effects = worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2),
                            ("o-3:payment", 3))
    frame = work_of(effects)
    assert sends(effects, "begin") == []
    assert frame.payload == {"worker_id": "p-a-1", "results": [],
                             "begin": [["o-1:payment", 1], ["o-2:payment", 2]], "take": 0}
    assert (worker.session.busy, worker.session.queued) == (2, 1)
    effects = worker.answer(frame, worked([CONTEXT, {**CONTEXT, "order_id": "o-2"}]))
    assert runs(effects) == [A1, A2]


def test_batched_one_frame_is_out_at_a_time_and_what_finishes_meanwhile_goes_in_the_next():
    worker = batched(slots=2)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2)))
    worker.answer(first, worked([CONTEXT, CONTEXT]))
    # The first result goes at once: nothing is out, so a lone step waits for nothing.
    second = work_of(worker.finish(A1, True, {"paid": 1}))
    assert second.payload["results"] == [["o-1:payment", 1, True, {"paid": 1}]]
    # While it is out, another result, and a new assignment's begin, wait for its answer.
    assert sends(worker.finish(A2, True, "two")) == []
    assert sends(worker.assign("p-a-1", ("o-3:payment", 3))) == []
    assert worker.tick() == [], "nothing goes out twice, nor in a loop"
    third = work_of(worker.answer(second, worked([])))
    assert third.payload == {"worker_id": "p-a-1", "results": [["o-2:payment", 2, True, "two"]],
                             "begin": [["o-3:payment", 3]], "take": 1}
    assert worker.session.unacknowledged == [A2.key], "the first result is acknowledged"
    worker.answer(third, worked([None]))  # stale: its slot is free again
    assert worker.session.unacknowledged == [] and worker.session.busy == 0


def test_batched_a_frame_offers_its_free_slots_and_runs_what_the_server_started_there():
    worker = batched(slots=3)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1)))
    assert first.payload["take"] == 2, "three slots, one asked about"
    # While it is out, its offered slots stay free: a new assignment waits for a slot.
    worker.assign("p-a-1", ("o-2:payment", 2))
    assert (worker.session.busy, worker.session.queued) == (1, 1)
    started = [["o-9:packing", 7, {**CONTEXT, "step": "packing"}]]
    effects = worker.answer(first, {"contexts": [CONTEXT], "started": started})
    assert runs(effects) == [A1, Assignment("p-a-1", "o-9:packing", 7)]
    assert worker.session.busy == 3 and worker.session.queued == 0, "o-2 takes the last"
    assert work_of(effects).payload == {"worker_id": "p-a-1", "results": [],
                                        "begin": [["o-2:payment", 2]], "take": 0}
    # The same task sent again later (say, after a reconnect) runs nothing twice.
    assert runs(worker.assign("p-a-1", ("o-9:packing", 7))) == []


def test_batched_no_slots_are_offered_while_draining_and_more_started_than_offered_run_not():
    worker = batched(slots=2)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1)))
    started = [["o-8:packing", 3, CONTEXT], ["o-9:packing", 4, CONTEXT]]
    effects = worker.answer(first, {"contexts": [CONTEXT], "started": started})
    assert [a.task_id for a in runs(effects)] == ["o-1:payment", "o-8:packing"]
    worker.session.signal("SIGTERM", worker.now)
    frame = work_of(worker.finish(A1))
    assert frame.payload["take"] == 0


def test_batched_tasks_started_for_a_frame_whose_answer_came_late_still_run():
    worker = batched(slots=2)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1)))
    worker.advance(5.1)
    again = work_of(worker.tick())
    late = worker.answer(first, {"contexts": [CONTEXT],
                                 "started": [["o-9:packing", 7, CONTEXT]]})
    assert runs(late) == [Assignment("p-a-1", "o-9:packing", 7)]
    assert runs(worker.answer(again, worked([CONTEXT]))) == [A1]


def test_batched_a_failures_traceback_is_its_results_fifth_item():
    from scheduler.steps.failure import Failure

    worker = batched(slots=2)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2)))
    worker.answer(first, worked([CONTEXT, CONTEXT]))
    out = work_of(worker.finish(A1, False, Failure("RuntimeError: crashed", "Traceback ...")))
    assert out.payload["results"] == [["o-1:payment", 1, False, "RuntimeError: crashed",
                                       "Traceback ..."]]
    worker.finish(A2, True, {"ok": 1})
    (plain,) = work_of(worker.answer(out, worked([]))).payload["results"]
    assert plain == ["o-2:payment", 2, True, {"ok": 1}]


def test_batched_a_frame_left_unanswered_goes_out_again_and_only_the_new_answer_counts():
    worker = batched(slots=1)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1)))
    worker.advance(5.1)
    second = work_of(worker.tick())
    assert second.payload == first.payload and second.rid != first.rid
    assert worker.answer(first, worked([CONTEXT])) == []
    assert runs(worker.answer(second, worked([CONTEXT]))) == [A1]


def test_batched_results_lost_with_the_connection_go_out_again_after_resuming():
    worker = batched(slots=1)
    worker.answer(work_of(worker.assign("p-a-1", ("o-1:payment", 1))), worked([CONTEXT]))
    lost = work_of(worker.finish(A1, True, "v"))
    worker.session.disconnected("transport error", worker.now)
    assert worker.answer(lost, worked([])) == []
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True, protocol=2))
    assert work_of(effects).payload["results"] == lost.payload["results"]


def test_batched_a_refused_frame_drops_its_results_frees_its_slots_and_says_so_once():
    worker = batched(slots=2)
    worker.answer(work_of(worker.assign("p-a-1", ("o-1:payment", 1))), worked([CONTEXT]))
    frame = work_of(worker.finish(A1))
    worker.assign("p-a-1", ("o-2:payment", 2))  # waits for the frame's answer
    effects = worker.answer(frame, {"error": {"code": "x", "message": "gone"}, "status": 404})
    assert logged(effects) == ("1 result and 0 begins of p-a-1 not accepted (a lease of an "
                               "earlier server or leader): gone (status 404)")
    assert worker.session.unacknowledged == []
    effects = worker.answer(work_of(effects), {"error": {"code": "x", "message": "no"},
                                               "status": 422})
    assert runs(effects) == [] and worker.session.busy == 0
    assert "0 results and 1 begin of p-a-1 refused: no (status 422)" in logged(effects)


def test_batched_an_answer_with_the_wrong_number_of_contexts_runs_nothing():
    worker = batched(slots=1)
    frame = work_of(worker.assign("p-a-1", ("o-1:payment", 1)))
    effects = worker.answer(frame, worked([CONTEXT, CONTEXT]))
    assert runs(effects) == [] and worker.session.busy == 0
    assert "refused: bad answer" in logged(effects)


def test_batched_results_are_split_so_that_no_frame_exceeds_the_message_size():
    worker = batched(slots=3, max_bytes=10_000)
    first = work_of(worker.assign("p-a-1", ("o-1:p", 1), ("o-2:p", 2), ("o-3:p", 3)))
    worker.answer(first, worked([CONTEXT] * 3))
    # Out of turn, so that all three wait together: one frame is out meanwhile.
    blocker = work_of(worker.finish(Assignment("p-a-1", "o-1:p", 1), True, "x" * 4000))
    worker.finish(Assignment("p-a-1", "o-2:p", 2), True, "y" * 4000)
    worker.finish(Assignment("p-a-1", "o-3:p", 3), True, "z" * 4000)
    frames = sends(worker.answer(blocker, worked([])), "work")
    # 10,000 bytes less the margin leave room for one 4 kB value a frame.
    assert [[r[0] for r in f.payload["results"]] for f in frames] == [["o-2:p"], ["o-3:p"]]


def test_batched_frames_count_each_entrys_task_id_not_only_its_value():
    worker = batched(slots=40, max_bytes=10_000)
    keys = [(f"o-{i:03d}-{'x' * 90}:payment", i + 1) for i in range(40)]
    first = work_of(worker.assign("p-a-1", *keys))
    worker.answer(first, worked([CONTEXT] * 40))
    out = work_of(worker.finish(Assignment("p-a-1", *keys[0]), True, "v"))
    for key in keys[1:]:
        worker.finish(Assignment("p-a-1", *key), True, "y" * 50)
    frames = sends(worker.answer(out, worked([])), "work")
    assert len(frames) > 1
    assert sum(len(f.payload["results"]) for f in frames) == 39
    assert all(len(json.dumps(f.payload)) <= 10_000 - MESSAGE_MARGIN for f in frames)


def test_batched_results_under_an_earlier_id_go_in_a_frame_of_their_own():
    worker = batched(slots=2)
    first = work_of(worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2)))
    worker.answer(first, worked([CONTEXT, CONTEXT]))
    worker.session.left({"worker_id": "p-a-1", "status": "dead"}, worker.now)
    # Its cancelled handlers return; their results still go in (to be rejected by lease).
    out = work_of(worker.finish(A1))
    worker.finish(A2)  # waits: a frame is out
    (register,) = sends(worker.tick(), "register")
    worker.answer(register, welcome("p-a-2", protocol=2))
    worker.assign("p-a-2", ("o-3:payment", 3))
    frames = sends(worker.answer(out, worked([])), "work")
    assert [(f.payload["worker_id"], [r[0] for r in f.payload["results"]],
             f.payload["begin"]) for f in frames] == [
        ("p-a-1", ["o-2:payment"], []), ("p-a-2", [], [["o-3:payment", 3]])]


# ---------------------------------------------------------------- heartbeats


def test_heartbeats_are_due_every_interval_the_server_gives_the_first_at_once():
    worker = Worker()
    register = worker.connect()
    assert worker.session.beat(worker.now) == [], "not before registering"
    worker.answer(register, welcome("p-a-1", interval=0.2))
    (beat,) = worker.session.beat(worker.now)
    assert beat.payload == {"worker_id": "p-a-1"}
    assert worker.session.beat(worker.now) == []
    assert worker.session.beat_wait(worker.now) == pytest.approx(0.2)
    worker.advance(0.2)
    assert sends(worker.session.beat(worker.now), "heartbeat")


def test_no_heartbeats_while_disconnected():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.disconnected("transport error", worker.now)
    worker.advance(10)
    assert worker.session.beat(worker.now) == []


@pytest.mark.parametrize("reply", [{"alive": False, "chaos": {}},
                                   {"error": {"code": "not_found", "message": "?"},
                                    "status": 404}])
def test_declared_dead_the_process_refuses_what_waited_and_joins_again(reply):
    worker = Worker(slots=1)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))  # A2 waits for a slot
    (beat,) = worker.session.beat(worker.now)
    effects = worker.answer(beat, reply)
    assert "declared p-a-1 dead (missed heartbeats); joining again" in logged(effects)
    # A1 asked to begin already: the server's answer decides (a dead worker's is null).
    assert refused(effects) == [("p-a-1", "o-2:payment", 2)]
    (register,) = sends(worker.tick(), "register")
    assert register.payload["resume"] is None and register.payload["join"] is True
    assert runs(worker.answer(worker.asked[A1.key], {"context": None})) == []
    assert worker.session.busy == 0


def test_told_it_is_dead_it_cancels_its_handlers_and_joins_again_only_once_they_ended():
    # The server counts a dead id's handlers in their step's limit until they have ended:
    # the process stops them first, hands in their (rejected) results, then joins anew.
    worker = Worker(slots=2)
    worker.join("p-a-1")
    running(worker, A1, A2, timeout=10.0)
    (beat,) = worker.session.beat(worker.now)
    effects = worker.answer(beat, {"alive": False, "chaos": {}})
    assert cancels(effects) == [A1, A2]
    assert "cancelling the 2 handlers it runs under that id" in logged(effects)
    assert worker.session.winding_down()
    assert sends(worker.tick(), "register") == [], "no joining while they run"
    (result,) = sends(worker.finish(A1, False, "cancelled"), "result")
    assert result.payload["worker_id"] == "p-a-1"  # the server rejects it: it has ended
    assert sends(worker.tick(), "register") == []
    sends(worker.finish(A2, False, "cancelled"), "result")
    (register,) = sends(worker.tick(), "register")
    assert register.payload["join"] is True and register.payload["resume"] is None
    assert register.payload["running"] == [] and register.payload["ids"] == ["p-a-1"]
    worker.answer(register, welcome("p-a-2"))
    assert worker.session.worker_id == "p-a-2"


def test_told_it_is_dead_a_handler_that_ignores_its_cancellation_ends_the_process():
    worker = Worker(slots=2, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, A2, timeout=10.0)
    worker.session.left({"worker_id": "p-a-1", "status": "dead"}, worker.now)
    worker.finish(A2, False, "cancelled")
    worker.advance(0.99)
    assert worker.exit_of(worker.tick()) is None
    worker.advance(0.02)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(EXIT_STUCK, cancel=True)
    assert "ignored its cancellation after p-a-1 was declared dead" in logged(effects)


def test_a_stuck_handler_without_a_registered_connection_ends_the_process():
    # Among free slots a stuck handler is fine while the server counts it (a live id); with
    # no connection the server may declare the id dead and stop counting it in time.
    worker = Worker(slots=2, cancel_grace=1.0)
    worker.join("p-a-1")
    running(worker, A1, timeout=2.0)
    worker.session.disconnected("transport error", worker.now)
    worker.advance(2.0)
    assert cancels(worker.tick()) == [A1]
    worker.session.connect_failed("down", False, worker.now)
    worker.advance(1.0)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(EXIT_STUCK, cancel=True)
    assert "ignored its cancellation without a registered connection" in logged(effects)


def test_every_registration_says_what_the_process_runs_and_under_which_ids():
    worker = Worker(slots=2)
    worker.join("p-a-1")
    running(worker, A1, timeout=10.0)
    worker.session.disconnected("transport error", worker.now)
    register = worker.connect()
    assert register.payload["resume"] == "p-a-1"
    assert register.payload["running"] == [["p-a-1", "o-1:payment", 1]]
    assert register.payload["ids"] == ["p-a-1"]
    # Not resumed, and not joined while it runs a dead id's handler (a restarted server,
    # or one that declared it dead meanwhile): it cancels that handler, and registers again
    # as soon as it has returned.
    effects = worker.answer(register, welcome(None))
    assert cancels(effects) == [A1] and worker.session.worker_id is None
    worker.finish(A1, False, "cancelled")
    (again,) = sends(worker.tick(), "register")
    assert again.payload["join"] is True and again.payload["running"] == []
    assert again.payload["ids"] == ["p-a-1"]


def test_a_begin_answered_for_an_id_declared_dead_meanwhile_starts_its_handler_cancelled():
    worker = Worker(slots=1)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.left({"worker_id": "p-a-1", "status": "dead"}, worker.now)
    effects = worker.begin(A1)
    assert runs(effects) == [A1] and cancels(effects) == [A1]
    assert worker.session.winding_down()


def test_a_left_dead_message_about_the_current_id_is_a_death_and_about_another_is_nothing():
    worker = Worker()
    worker.join("p-a-1")
    assert worker.session.left({"worker_id": "p-old", "status": "dead"}, worker.now) == []
    assert worker.session.left({"worker_id": "p-old", "status": "removed"}, worker.now) == []
    assert worker.session.worker_id == "p-a-1" and not worker.session.draining
    worker.session.left({"worker_id": "p-a-1", "status": "dead"}, worker.now)
    assert worker.session.worker_id is None


# ---------------------------------------------------------------- draining and exiting


def test_a_signal_drains_refuses_queued_work_tells_the_server_and_exits_0_once_removed():
    worker = Worker(slots=1)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))  # A1 begins, A2 waits
    effects = worker.session.signal("SIGTERM", worker.now)
    assert "SIGTERM: draining (1 task(s) running)" in logged(effects)
    assert refused(effects) == [("p-a-1", "o-2:payment", 2)]
    assert worker.session.queued == 0
    (drain,) = sends(worker.tick(), "drain")
    assert drain.payload == {"worker_id": "p-a-1"}
    worker.answer(drain, {"ok": True})
    assert refused(worker.assign("p-a-1", ("o-3:payment", 3))) == [
        ("p-a-1", "o-3:payment", 3)], "nothing new runs while draining"
    worker.run(A1)
    assert worker.exit_of(worker.tick()) is None, "waits for the server's removal"
    worker.session.left({"worker_id": "p-a-1", "status": "removed"}, worker.now)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(0)
    assert "drained and removed from the ring; exiting" in logged(effects)


def test_a_second_signal_exits_at_once_with_status_1_and_cancels_running_handlers():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.begin(A1)
    worker.session.signal("SIGTERM", worker.now)
    worker.session.signal("SIGINT", worker.now)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(1, cancel=True)
    assert "exiting at once: a second signal (SIGINT)" in logged(effects)


def test_a_removal_while_busy_exits_0_once_the_handler_ends_and_never_joins_again():
    # Drained from the dashboard, then its order cancelled: the server removes the worker
    # while the handler still runs.
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.begin(A1)
    effects = worker.session.left({"worker_id": "p-a-1", "status": "removed"}, worker.now)
    assert "p-a-1 drained: it left the ring" in logged(effects)
    for _ in range(3):
        worker.advance(1)
        assert sends(worker.tick(), "register") == [] and worker.exit_of(worker.tick()) is None
    assert refused(worker.assign("p-a-1", ("o-2:payment", 2))) == [
        ("p-a-1", "o-2:payment", 2)]
    worker.finish(A1)
    assert worker.exit_of(worker.tick()) == Exit(0)


def test_a_removed_process_that_reconnects_registers_without_joining():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))  # still running, so it does not exit yet
    worker.session.left({"worker_id": "p-a-1", "status": "removed"}, worker.now)
    worker.session.disconnected("transport error", worker.now)
    register = worker.connect()
    assert register.payload["join"] is False and register.payload["resume"] is None


def test_draining_without_a_connection_exits_after_the_grace_with_results_undelivered():
    worker = Worker(drain_grace=2.0)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.run(A1)  # its result is never acknowledged
    worker.session.disconnected("transport error", worker.now)
    worker.session.signal("SIGTERM", worker.now)
    worker.advance(1.9)
    assert worker.exit_of(worker.tick()) is None
    worker.session.connect_failed("down", False, worker.now)
    worker.advance(0.2)
    effects = worker.tick()
    assert worker.exit_of(effects) == Exit(0)
    assert "exiting with 1 result(s) undelivered" in logged(effects)


def test_draining_reconnects_without_joining_to_hand_in_its_results_then_exits():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.run(A1)
    worker.session.disconnected("transport error", worker.now)
    worker.session.signal("SIGTERM", worker.now)
    register = worker.connect()
    assert register.payload == {**register.payload, "resume": "p-a-1", "join": False}
    effects = worker.answer(register, welcome(None))  # p-a-1 was declared dead meanwhile
    (result,) = sends(effects, "result")
    assert worker.exit_of(worker.tick()) is None, "a result is still undelivered"
    worker.answer(result, {"ok": True})
    assert worker.exit_of(worker.tick()) == Exit(0)


def test_an_idle_process_that_never_joined_exits_0_at_once_on_a_signal():
    worker = Worker()
    worker.session.signal("SIGTERM", worker.now)
    assert worker.exit_of(worker.tick()) == Exit(0)


def test_a_drain_answered_as_already_draining_waits_for_the_removal():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.signal("SIGTERM", worker.now)
    (drain,) = sends(worker.tick(), "drain")
    worker.answer(drain, {"error": {"code": "conflict", "message": "draining"}, "status": 409})
    assert worker.session.worker_id == "p-a-1"
    assert worker.exit_of(worker.tick()) is None and sends(worker.tick(), "drain") == []


def test_a_drain_answered_unknown_forgets_the_id_and_exits():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.signal("SIGTERM", worker.now)
    (drain,) = sends(worker.tick(), "drain")
    effects = worker.answer(drain, {"error": {"code": "not_found", "message": "gone"},
                                    "status": 404})
    assert "drain of p-a-1: gone" in logged(effects)
    assert worker.exit_of(worker.tick()) == Exit(0)


def test_a_drain_lost_with_the_connection_is_sent_again_after_resuming():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.signal("SIGTERM", worker.now)
    sends(worker.tick(), "drain")
    worker.session.disconnected("transport error", worker.now)
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert sends(effects, "drain")


def test_a_task_asked_about_before_a_drain_is_asked_again_not_refused():
    # `begin` went out and its answer was lost: the server may have started it, so the
    # drain waits for it rather than refusing it.
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.disconnected("transport error", worker.now)
    assert refused(worker.session.signal("SIGTERM", worker.now)) == []
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert begins(effects) == [A1] and refused(effects) == []


def test_a_task_holding_a_slot_but_never_asked_about_is_refused_by_a_drain():
    worker = Worker()
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1))
    worker.session.disconnected("transport error", worker.now)
    worker.assign("p-a-1", ("o-2:payment", 2))  # no connection: `begin` never went out
    effects = worker.session.signal("SIGTERM", worker.now)
    assert "refusing o-2:payment (lease 2, p-a-1): draining" in logged(effects)
    assert worker.session.busy == 1, "o-1 may have started: its slot waits for the answer"
    effects = worker.answer(worker.connect(), welcome("p-a-1", resumed=True))
    assert begins(effects) == [A1] and refused(effects) == [("p-a-1", "o-2:payment", 2)]


def test_the_server_that_started_the_process_gone_exits_0_at_once():
    worker = Worker()
    worker.join("p-a-1")
    worker.session.parent_gone(worker.now)
    exit_ = worker.exit_of(worker.tick())
    assert exit_.status == 0 and exit_.cancel


# ---------------------------------------------------------------- several servers, one leader

A_URL, B_URL, C_URL = "http://a:5000", "http://b:5000", "http://c:5000"


def fleet_worker(**options) -> Worker:
    return Worker(server=f"{A_URL},{B_URL},{C_URL}", **options)


def attempt(worker: Worker) -> str:
    """Tick until the next connection attempt; returns the server it goes to."""
    for _ in range(100_000):
        effects = worker.tick()
        connects = [e for e in effects if isinstance(e, Connect)]
        if connects:
            return connects[0].url
        worker.advance(0.01)
    raise AssertionError("no connection attempt")


def test_the_servers_are_tried_in_turn_at_once_and_only_a_whole_round_backs_off():
    worker = fleet_worker()
    tried, started = [], worker.now
    for _ in range(3):
        tried.append(attempt(worker))
        worker.session.connect_failed("Connection refused", False, worker.now)
    assert tried == [A_URL, B_URL, C_URL] and worker.now == started, "no wait within a round"
    assert attempt(worker) == A_URL
    assert 0.25 <= worker.now - started <= 0.5 + 0.01, "a round of failures backs off"
    second_round = worker.now
    for _ in range(3):
        worker.session.connect_failed("Connection refused", False, worker.now)
        attempt(worker)
    assert 0.5 <= worker.now - second_round <= 1.0 + 0.01, "...and the backoff grows"


def test_a_standby_sends_the_worker_to_the_leader_it_names():
    worker = fleet_worker()
    assert attempt(worker) == A_URL
    effects = worker.session.standby_answered(C_URL, worker.now)
    assert f"{A_URL} does not lead (it names {C_URL} as the leader); trying {C_URL}" in \
        logged(effects)
    assert attempt(worker) == C_URL and worker.now == START
    worker.session.connected(worker.now)
    assert worker.session.url == C_URL


def test_a_leader_named_that_is_not_one_of_the_servers_given_is_not_followed():
    worker = fleet_worker()
    attempt(worker)
    worker.session.standby_answered("http://elsewhere:5000", worker.now)
    assert attempt(worker) == B_URL


def test_while_standbys_answer_and_nobody_leads_the_worker_asks_again_soon_without_growing():
    # A failover under way: the old leader is gone, a standby is about to take over.
    worker = Worker(server=f"{A_URL},{B_URL}")
    waits = []
    for _ in range(6):
        assert attempt(worker) == A_URL
        started = worker.now
        worker.session.connect_failed("Connection refused", False, worker.now)
        assert attempt(worker) == B_URL and worker.now == started
        effects = worker.session.standby_answered("", worker.now)
        assert "does not lead (no server leads yet)" in logged(effects)
        waits.append(worker.now)
    waits = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert all(0.25 - 0.02 <= w <= 0.5 + 0.02 for w in waits), waits


def test_after_a_lost_connection_the_same_server_is_tried_first_then_the_next():
    worker = fleet_worker()
    attempt(worker)
    worker.session.connect_failed("Connection refused", False, worker.now)
    assert attempt(worker) == B_URL
    (register,) = sends(worker.session.connected(worker.now), "register")
    worker.answer(register, welcome("p-b-1"))
    effects = worker.session.disconnected("transport error", worker.now)
    assert f"lost the connection to {B_URL}" in logged(effects)
    assert attempt(worker) == B_URL, "a blip: the same server first"
    effects = worker.session.connect_failed("Connection refused", False, worker.now)
    assert f"cannot reach {B_URL} (Connection refused); trying {C_URL}" in logged(effects)
    assert attempt(worker) == C_URL


def test_a_token_refusal_still_exits_with_the_refused_status_with_several_servers():
    worker = fleet_worker()
    attempt(worker)
    worker.session.connect_failed("unauthorized: a valid token is required", True, worker.now)
    assert worker.exit_of(worker.tick()).status == EXIT_REFUSED


def test_after_a_failover_the_work_of_the_old_leaders_id_is_refused_and_its_results_go_out():
    # The old leader assigned o-1 (running) and o-2 (queued) to p-a-1, then was SIGKILLed.
    # The new leader knows neither the id nor its leases: the worker joins afresh, refuses
    # what had not started, and hands in what ran (the new leader refuses it: fenced).
    worker = fleet_worker(slots=1)
    worker.join("p-a-1")
    worker.assign("p-a-1", ("o-1:payment", 1), ("o-2:payment", 2))
    worker.begin(A1)
    worker.session.disconnected("transport error", worker.now)
    worker.session.connect_failed("Connection refused", False, worker.now)
    assert attempt(worker) == B_URL
    (register,) = sends(worker.session.connected(worker.now), "register")
    assert register.payload["resume"] == "p-a-1"
    effects = worker.answer(register, welcome("p-b-1"))
    assert refused(effects) == [("p-a-1", "o-2:payment", 2)]
    assert worker.session.worker_id == "p-b-1"
    (result,) = sends(worker.finish(A1), "result")
    assert result.payload["worker_id"] == "p-a-1"
    effects = worker.answer(result, {"error": {"code": "not_found", "message":
                                               "unknown worker p-a-1"}, "status": 404})
    assert "not accepted (a lease of an earlier server or leader)" in logged(effects)
    assert worker.session.unacknowledged == [] and worker.session.busy == 0


# ---------------------------------------------------------------- a refused CONNECT


def test_a_refused_connect_names_the_leader_a_standby_defers_to():
    from scheduler.remote.protocol import connect_refusal

    standby = {"message": "a standby", "data": {"role": "standby", "leader": "http://a:5000"}}
    assert connect_refusal(standby) == ("a standby", "http://a:5000")
    starting = {"message": "electing", "data": {"role": "starting", "leader": None}}
    assert connect_refusal(starting) == ("electing", "")
    token = {"message": "unauthorized: a valid token is required"}
    assert connect_refusal(token) == ("unauthorized: a valid token is required", None)
    assert connect_refusal({"message": "x", "data": {"role": "leader"}}) == ("x", None)
    handshake = {"error": {"code": "standby", "message": "no leader"}, "role": "standby",
                 "leader": None}
    assert connect_refusal(handshake) == ("no leader", "")
    assert connect_refusal("not a dict") == (None, None)
    assert connect_refusal({"message": 5, "data": [1]}) == (None, None)
