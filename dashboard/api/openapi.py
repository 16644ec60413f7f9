"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json.

What a client sends is written from the messages the server reads it with (bodies.py, the
engine's order, the demo's chaos settings; schema.py translates), for the running server's
workflows; what it answers, and the operations, by hand next to the routes. A test checks
that every route the app registers is described here (and nothing else); every status a
request can meet on its way (the front server, the token, the text door, a standby) is
listed on every operation (DOOR).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from scheduler import OrderStatus, TaskState
from scheduler.demo.handlers import CHAOS_SETTINGS
from scheduler.engine.fields import Message
from scheduler.engine.orders import IDEMPOTENCY_KEY, ORDER, SIGNAL
from scheduler.engine.states import OrderStage

from ..config import MAX_HEAD, MAX_REQUEST_LINE
from .bodies import (
    DEMO_ORDERS,
    EVENT_PAGE,
    ID_LIST,
    MIGRATION,
    NEW_WORKERS,
    NO_BODY,
    ORDER_SEARCH,
    REPLAY,
    RERUN,
    STEP_LIMITS,
    STEP_PAUSE,
)
from .schema import (
    STORABLE_JSON,
    Sets,
    field_schema,
    message_schema,
    messages_in,
    parameters,
    ref,
)

JSON = "application/json"
# Every message a client sends in a body; written into components/schemas.
REQUEST_MESSAGES: tuple[Message, ...] = (ORDER, DEMO_ORDERS, ID_LIST, MIGRATION, NEW_WORKERS,
                                         NO_BODY, CHAOS_SETTINGS, STEP_PAUSE, STEP_LIMITS,
                                         SIGNAL, RERUN, REPLAY)
_ref = ref


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


REASONS = {
    400: ("Malformed JSON or query parameter (code invalid_json, invalid_parameter), or a "
          "path or query parameter holding text no journal can store (a NUL, a lone "
          "surrogate; code invalid_parameter)"),
    401: "Missing or wrong bearer token",
    404: "Unknown id",
    409: "The object's state does not allow this",
    413: "Body larger than 1 MiB",
    415: "Body is not application/json",
    422: ("Well-formed JSON that does not fit the documented body (code validation_error); "
          "the message names the field"),
    503: ("The journal cannot be written, or a read of it failed (code "
          "journal_unavailable): nothing is accepted until it is fixed; or the order is "
          "accepted but not committed yet (code commit_pending, e.g. an Idempotency-Key "
          "posted again while its first request waits for the commit): ask again after "
          "Retry-After"),
}

# What any request may meet before (or instead of) its route, with when it applies.
DOOR = {
    400: "a query or path parameter holding text no journal can store (a NUL, a lone "
         "surrogate; code invalid_parameter)",
    403: "a command a browser sent on behalf of another site (code cross_site_request)",
    408: "the request line and headers did not arrive within the header timeout (`orderflow "
         "serve --header-timeout`; code request_timeout)",
    414: "the request line (the method, the path and the query string) is longer than "
         f"{MAX_REQUEST_LINE} bytes (code uri_too_long); every documented query fits",
    421: "a host name other than 127.0.0.1, localhost or [::1] on a server without a token "
         "(code misdirected_request)",
    429: "too many connections from this client address (code too_many_connections)",
    431: f"the request line and headers exceed {MAX_HEAD // 1024} KiB (code "
         "headers_too_large)",
    500: "an unexpected failure, logged by the server (code internal_error)",
    503: "the server has no connection or thread to spare (code server_busy); or, on the "
         "API, this server does not lead (code standby, with role and leader beside the "
         "error): send it to the leader. Ask again after Retry-After",
}
UNSAFE_METHODS = ("post", "put", "patch", "delete")


def _error(description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _errors(*statuses: int) -> dict:
    return {str(s): _error(REASONS[s]) for s in statuses}


def _with_door(method: str, op: dict) -> dict:
    """`op` with every status the way to it can answer: the door's reasons, beside (or
    after) its own."""
    responses = dict(op["responses"])
    door = dict(DOOR)
    if op.get("security") != []:
        door[401] = REASONS[401]
    if method not in UNSAFE_METHODS:
        door.pop(403)
    for status, reason in door.items():
        own = responses.get(str(status))
        if own is None:
            responses[str(status)] = _error(reason[0].upper() + reason[1:])
        elif reason not in own["description"]:
            responses[str(status)] = {**own, "description": f"{own['description']}; or "
                                                            f"{reason}"}
    return {**op, "responses": responses}


def _path(name: str) -> dict:
    # Ids are at most 200 characters (bodies.ID_LIST), so every documented path fits in a
    # request line (DOOR, 414).
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}


def _body(message: Message, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": _ref(message.name)}}}


def _op(summary: str, responses: dict, **extra: Any) -> dict:
    return {"summary": summary, "responses": responses, **extra}


BODY_ERRORS = (400, 401, 413, 415, 422)

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "examples": ["validation_error", "not_found"]},
            "message": {"type": "string"}}}},
    },
    "Task": {
        "type": "object",
        "properties": {
            "status": {"enum": [s.value for s in TaskState]},
            "attempts": {"type": "integer"},
            "runs": {"type": "integer"},
            "moves": {"type": "integer",
                      "description": "times it was taken off a worker that died or drained "
                                     "and put back in line (one `task_reassigned` event each)"},
            "reassignments": {"type": "integer",
                              "description": "times its worker died while it ran (its poison "
                                             "count, reset by a manual retry)"},
            "worker": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "result": {},
            "retry_at": {"type": ["number", "null"]},
            "waiting_for": {"type": ["string", "null"],
                            "description": "why a ready step is not on a worker yet: no live "
                                           "worker, no free slot, or its step's limits"},
            "compensates": {"type": ["string", "null"],
                            "description": "of an undo (a saga's compensation): the step whose "
                                           "success it undoes; its idempotency key is "
                                           "`<order id>:<step>:compensate`"},
        },
    },
    "Order": {
        "type": "object",
        "required": ["id", "number", "status", "tasks"],
        "properties": {
            "id": {"type": "string"},
            "number": {"type": "integer", "description": "submission order; the list cursor"},
            "status": {"enum": [s.value for s in OrderStatus]},
            "workflow": {"type": "string"},
            "version": {"type": "string",
                        "description": "the version of the workflow definition the order is "
                                       "pinned to (its DAG, run to the end whatever is "
                                       "deployed since); empty: none"},
            "priority": {"type": "integer"},
            "customer": {"type": "string"},
            "data": _ref("OrderInput"),
            "tasks": {"type": "object", "additionalProperties": _ref("Task")},
            "submitted_at": {"type": "number"},
            "finished_at": {"type": ["number", "null"]},
            "terminal": {"type": "boolean"},
            "waits": {"type": "array", "description": (
                "while a step waits for a signal or a time (status waiting): what each waits "
                "for and until when"), "items": _ref("Waiting")},
        },
    },
    "Waiting": {
        "type": "object",
        "required": ["step", "signal", "until"],
        "properties": {
            "step": {"type": "string"},
            "signal": {"type": ["string", "null"],
                       "description": "the signal it waits for (a wait); null: a step waiting "
                                      "for its time (a delay, or its order's not_before)"},
            "until": {"type": ["number", "null"],
                      "description": "Unix time its timeout passes, or it may start; null: "
                                     "a wait without a timeout"},
            "what": {"type": "string"},
        },
    },
    "SignalResult": {
        "type": "object",
        "required": ["signal", "outcome", "order"],
        "properties": {
            "signal": {"type": "string"},
            "outcome": {"enum": ["delivered", "kept", "repeated"], "description": (
                "delivered: its wait took it; kept: the order has not reached its wait yet "
                "and takes it when it does; repeated: the same Idempotency-Key as the signal "
                "taken, which is kept")},
            "order": _ref("Order"),
        },
    },
    "Event": {
        "type": "object",
        "required": ["seq", "ts", "type", "message"],
        "properties": {
            "seq": {"type": "integer"},
            "ts": {"type": "number", "description": "Unix time"},
            "type": {"type": "string", "examples": ["task_reassigned", "worker_dead"]},
            "order_id": {"type": ["string", "null"]},
            "step": {"type": ["string", "null"]},
            "worker_id": {"type": ["string", "null"]},
            "attempt": {"type": "integer"},
            "message": {"type": "string"},
            "error": {"type": "string", "description": "a failed attempt's error (task_failed)"},
            "traceback": {"type": "string",
                          "description": "a failed attempt's traceback, where its handler "
                                         "raised the error (task_failed; absent when the "
                                         "handler failed on purpose with TaskError, or timed "
                                         "out). Left out of the Socket.IO stream"},
        },
    },
    "Worker": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"enum": ["alive", "suspect", "draining", "dead", "removed"]},
            "heartbeat_age": {"type": "number"},
            "current_task": {"type": ["string", "null"],
                             "description": "the first of `running`"},
            "running": {"type": "array", "items": {"type": "string"}},
            "slots": {"type": "integer", "description": "tasks it runs at once"},
            "steps": {"type": ["array", "null"], "items": {"type": "string"},
                      "description": "the steps it has handlers for (null: any)"},
            "definitions": {"type": ["array", "null"], "items": {"type": "string"},
                            "description": "the workflow definitions (workflow@version) it "
                                           "runs: steps of orders pinned to one of them "
                                           "(null: any)"},
            "tags": {"type": "array", "items": {"type": "string"},
                     "description": "capabilities it offers"},
            "busy": {"type": "integer", "description": "slots running a task"},
            "queued": {"type": "integer", "description": "handed to it, not started yet"},
            "stuck": {"type": "integer",
                      "description": "slots held by attempts that timed out and have not "
                                     "returned"},
            "abandoned": {"type": "integer",
                          "description": "thread workers: threads left to handlers that "
                                         "ignored their cancellation (a new thread took each "
                                         "slot), still inside them"},
            "tasks_done": {"type": "integer"},
            "tasks_failed": {"type": "integer"},
            "share": {"type": "number", "description": "share of the hash ring"},
            "host": {"type": "string", "description": "process workers only"},
            "pid": {"type": "integer", "description": "process workers only"},
            "name": {"type": "string", "description": "process workers only"},
        },
    },
    "Ring": {
        "type": "object",
        "description": "the consistent-hash ring: arcs as fractions of the circle",
        "properties": {
            "arcs": {"type": "array", "items": {"type": "array", "prefixItems": [
                {"type": "number"}, {"type": "number"}, {"type": "string"}]}},
            "shares": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "Stats": {
        "type": "object",
        "properties": {
            "orders": {"type": "object", "additionalProperties": {"type": "integer"}},
            "orders_total": {"type": "integer"},
            "tasks": {"type": "object", "additionalProperties": {"type": "integer"}},
            "progress": {
                "type": "object",
                "description": "every order by stage: an unfinished one is running while a "
                               "step of it runs, else retrying while one waits out a backoff, "
                               "else queued; finished ones by status, since start. The "
                               "dashboard's tiles and filters and /metrics count the same",
                "properties": {s.value: {"type": "integer"} for s in OrderStage}},
            "steps": {"type": "object",
                      "description": "tasks of the unfinished orders, by step and state",
                      "additionalProperties": {"type": "object", "additionalProperties": {
                          "type": "integer"}}},
            "rates": {"type": "object",
                      "description": "per second over the last `window` seconds",
                      "properties": {"orders_per_s": {"type": "number"},
                                     "steps_per_s": {"type": "number"},
                                     "failures_per_s": {"type": "number",
                                                        "description": "attempts failed"},
                                     "window": {"type": "integer"}}},
            "retries": {"type": "integer"},
            "reassignments": {"type": "integer",
                              "description": "tasks held by a worker that died, poisoned "
                                             "ones included"},
            "moves": {"type": "integer",
                      "description": "tasks taken off a worker that died or drained and put "
                                     "back in line: one per task_reassigned event"},
            "moves_by_reason": {"type": "object", "properties": {
                "worker dead": {"type": "integer"}, "drain": {"type": "integer"}}},
            "rejected_results": {"type": "integer"},
            "workers": {"type": "object", "additionalProperties": {"type": "integer"}},
            "slots": {"type": "object", "description": "capacity of the live workers",
                      "properties": {"total": {"type": "integer"}, "busy": {"type": "integer"},
                                     "stuck": {"type": "integer"},
                                     "abandoned": {"type": "integer",
                                                   "description": "threads abandoned to "
                                                                  "hung handlers (not slots)"}}},
            "abandoned_threads": {"type": "integer",
                                  "description": "threads abandoned to handlers that ignored "
                                                 "their cancellation, ever"},
            "workers_hung": {"type": "integer",
                             "description": "thread workers declared dead for more such "
                                            "threads than they may abandon (max_abandoned)"},
            "timed_out_attempts": {"type": "integer",
                                   "description": "attempts that ran past their step's time "
                                                  "limit (each a failed attempt), ever"},
            "held_by_limits": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "ready tasks a step's limits hold back, by step"},
            "unroutable": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "ready tasks no live worker can run (no handler, "
                                          "a tag nobody offers, or a workflow definition "
                                          "nobody runs), by step"},
            "definitions": {
                "type": "array",
                "description": "workflow definitions with unfinished orders, and the running "
                               "app's: how many orders remain on each, so the last worker "
                               "of an old version may go once its count is 0",
                "items": {"type": "object", "properties": {
                    "key": {"type": "string", "description": "workflow@version"},
                    "workflow": {"type": "string"}, "version": {"type": "string"},
                    "unfinished": {"type": "integer"},
                    "current": {"type": "boolean",
                                "description": "the running app has it"},
                    "offered": {"type": "boolean",
                                "description": "a live worker runs it"}}}},
            "stranded": {"type": "object", "additionalProperties": {"type": "integer"},
                         "description": "unfinished orders pinned to a workflow definition "
                                        "the running app lacks and no live worker offers, "
                                        "by definition key: they wait for a worker of it"},
            "paused": {"type": "object", "description": "paused steps: who, since, why, "
                                                         "by_breaker",
                       "additionalProperties": {"type": "object"}},
            "throughput": {"type": "number", "description": "orders completed/s, last minute"},
            "timers_pending": {"type": "integer", "description": (
                "timers set: waits' timeouts, steps' delays, orders' not_before (no thread "
                "each: one heap)")},
            "last_seq": {"type": "integer"},
            "now": {"type": "number", "description": "the server's clock (Unix time)"},
        },
    },
    "WorkflowStep": {
        "type": "object",
        "required": ["name", "deps"],
        "properties": {
            "name": {"type": "string"},
            "deps": {"type": "array", "items": {"type": "string"},
                     "description": "steps it waits for: it becomes ready once all of them "
                                    "succeeded (several steps may wait for one: a fan-out; "
                                    "one may wait for several: a fan-in)"},
            "doc": {"type": "string", "description": "the handler's docstring"},
            "async": {"type": "boolean", "description": "an `async def` handler"},
            "timeout": {"type": ["number", "null"],
                        "description": "seconds an attempt may run; null: the server's "
                                       "--step-timeout"},
            "retries": {"type": ["integer", "null"],
                        "description": "retries after the first attempt; null: the server's"},
            "backoff": {"type": ["array", "null"], "items": {"type": "number"},
                        "minItems": 2, "maxItems": 2,
                        "description": "[base, cap] seconds of jittered backoff; null: the "
                                       "server's"},
            "max_in_flight": {"type": ["integer", "null"],
                              "description": "at most this many running across the cluster"},
            "rate": {"type": ["number", "null"], "description": "at most this many starts/s"},
            "burst": {"type": ["integer", "null"], "description": "starts a rate allows at once"},
            "tags": {"type": "array", "items": {"type": "string"},
                     "description": "capabilities a worker must offer to run it"},
            "compensate": {"type": ["string", "null"],
                           "description": "the step that undoes it if its order fails or is "
                                          "cancelled after it succeeded"},
            "delay": {"type": ["number", "null"],
                      "description": "seconds it waits, holding no slot, after the steps "
                                     "before it finished (null: none)"},
            "wait": {"type": "boolean",
                     "description": "a wait: a step with no handler, completed by POST "
                                    "/api/orders/{order_id}/signals/{name} with its name"},
            "on_timeout": {"enum": ["cancel", "fail", "continue"],
                           "description": "of a wait: what its timeout (`timeout`, seconds; "
                                          "null: none) does to its order"},
            "breaker": {"type": ["object", "null"],
                        "description": "its circuit breaker (null: none): it pauses itself "
                                       "when `share` of at least `min_attempts` attempts in "
                                       "`window` seconds failed alike, and lets a probe try "
                                       "every `probe_after` seconds",
                        "properties": {k: {"type": "number"} for k in (
                            "share", "min_attempts", "window", "probe_after")}},
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["name", "cron", "tz", "workflow", "catch_up", "next", "last_run", "runs",
                     "skipped"],
        "properties": {
            "name": {"type": "string"},
            "cron": {"type": "string", "description": "5 fields, or 6 with seconds first"},
            "tz": {"type": "string", "description": "the time zone its times are read in"},
            "workflow": {"type": ["string", "null"], "description": "null: the default"},
            "catch_up": {"type": "boolean",
                         "description": "a time missed while no server ran fires once at "
                                        "the start (true) or is skipped (false)"},
            "next": {"type": ["number", "null"],
                     "description": "Unix time of its next time (null: never again)"},
            "next_iso": {"type": ["string", "null"]},
            "last_run": {
                "type": ["object", "null"],
                "description": "its latest time fired (null: none yet)",
                "properties": {
                    "at": {"type": "number", "description": "the scheduled time (Unix)"},
                    "at_iso": {"type": "string"},
                    "order_id": {"type": "string", "description": "the order it submitted"},
                    "fired_at": {"type": "number", "description": "when (Unix)"},
                },
            },
            "runs": {"type": "integer", "description": "times fired"},
            "skipped": {"type": "integer", "description": "missed times skipped"},
            "since": {"type": ["number", "null"],
                      "description": "when the journal first knew it (null: not yet)"},
        },
    },
    "Step": {
        "type": "object",
        "required": ["name", "max_in_flight", "rate", "in_flight", "ready", "held", "paused"],
        "properties": {
            "name": {"type": "string"},
            "max_in_flight": {"type": ["integer", "null"],
                              "description": "at most this many running (null: no limit)"},
            "rate": {"type": ["number", "null"],
                     "description": "at most this many starts/s (null: no limit)"},
            "burst": {"type": ["integer", "null"]},
            "in_flight": {"type": "integer",
                          "description": "attempts counted against max_in_flight"},
            "ready": {"type": "integer", "description": "tasks ready, waiting to start"},
            "held": {"type": "integer",
                     "description": "ready tasks its limits or its pause hold back"},
            "breaker": {"type": "boolean", "description": "it has a circuit breaker"},
            "paused": {
                "type": ["object", "null"],
                "description": "null: not paused",
                "properties": {
                    "who": {"type": "string", "description": "an operator, or the circuit "
                                                             "breaker"},
                    "since": {"type": "number", "description": "Unix time"},
                    "why": {"type": "string"},
                    "by_breaker": {"type": "boolean"},
                    "reason": {"type": "string",
                               "description": "what its waiting tasks say"},
                },
            },
        },
    },
    "Workflow": {
        "type": "object",
        "required": ["name", "steps"],
        "properties": {
            "name": {"type": "string", "description": "the `workflow` of POST /api/orders"},
            "version": {"type": "string",
                        "description": "the version new orders are pinned to"},
            "steps": {"type": "array", "items": _ref("WorkflowStep"),
                      "description": "in a topological order: every step after those it "
                                     "waits for"},
            "compensations": {"type": "object", "additionalProperties": {"type": "string"},
                              "description": "step -> the step that undoes it (a saga): run "
                                             "newest success first when an order fails or "
                                             "is cancelled"},
        },
    },
    "Ids": {"type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
    "Skipped": {"type": "array", "description": "orders whose state did not allow it",
                "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "reason": {"type": "string"}}}},
    "MigrationPlan": {
        "type": "object", "required": ["order_id", "kept", "skipped", "dropped", "to_run"],
        "description": "what a migration does (or, dry_run, would do) to one order",
        "properties": {
            "order_id": {"type": "string"},
            "kept": {"type": "array", "items": {"type": "string"},
                     "description": "steps that succeeded, kept by name"},
            "skipped": {"type": "array", "items": {"type": "string"},
                        "description": "steps the new definition adds before steps that "
                                       "ran: never run (task status skipped)"},
            "dropped": {"type": "array", "items": {"type": "string"},
                        "description": "steps the new definition lacks: cancelled if "
                                       "unfinished, and left out"},
            "to_run": {"type": "array", "items": {"type": "string"},
                       "description": "steps left to run, in a topological order"}}},
    "History": {
        "type": "object",
        "description": "the last `span` seconds, a point every `interval` seconds, as columns "
                       "oldest first",
        "properties": {
            "interval": {"type": "number"}, "span": {"type": "number"},
            "t": {"type": "array", "items": {"type": "number"}, "description": "Unix time"},
            "orders_per_s": {"type": "array", "items": {"type": "number"}},
            "steps_per_s": {"type": "array", "items": {"type": "number"}},
            "failures_per_s": {"type": "array", "items": {"type": "number"},
                               "description": "attempts failed per second"},
            "queued": {"type": "array", "items": {"type": "integer"},
                       "description": "tasks ready or in a worker's queue"},
            "retrying": {"type": "array", "items": {"type": "integer"},
                         "description": "tasks backing off before a retry"},
        },
    },
    "FailureGroup": {
        "type": "object",
        "properties": {
            "step": {"type": "string", "description": "the step that failed"},
            "reason": {"type": "string",
                       "description": "its error with what varies (numbers, ids) as #"},
            "count": {"type": "integer"},
            "example": {"type": "string", "description": "the newest order's full error"},
            "last_at": {"type": "number", "description": "Unix time of the newest failure"},
            "orders": {"type": "array", "items": {"type": "string"},
                       "description": "order ids, newest first"},
        },
    },
    "WorkerAction": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "action": {"enum": ["kill", "drain"]},
                       "message": {"type": "string"}},
    },
}

def _no_body() -> dict:
    return {**_body(NO_BODY), "required": False}

PATHS: dict[str, dict] = {
    "/": {"get": _op("The dashboard page", {"200": {"description": "HTML",
                                                      "content": {"text/html": {}}}},
                     security=[])},
    "/vendor/{name}": {"get": _op(
        "A pinned browser library of the dashboard (socket.io-client, uPlot)",
        {"200": {"description": "JavaScript or CSS"}, **_errors(400, 404)},
        parameters=[_path("name")], security=[])},
    "/healthz": {"get": _op("Liveness probe (never needs a token)",
                            {"200": _json({"type": "object",
                                           "properties": {"status": {"const": "ok"}}}),
                             **_errors(503)},
                            security=[])},
    "/metrics": {"get": _op("Prometheus metrics", {
        "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
        **_errors(401)})},
    "/api/orders": {
        "post": _op(
            "Submit an order",
            {"201": _json(_ref("Order"), "Created"),
             "200": _json(_ref("Order"), "Repeated Idempotency-Key: the order it created"),
             **_errors(*BODY_ERRORS, 503)},
            parameters=[{"name": IDEMPOTENCY_KEY.name, "in": "header", "required": False,
                         "schema": field_schema(IDEMPOTENCY_KEY, {}),
                         "description": IDEMPOTENCY_KEY.description}],
            requestBody=_body(ORDER)),
        "get": _op(
            "List orders, newest first",
            {"200": _json({"type": "object", "properties": {
                "orders": {"type": "array", "items": _ref("Order")},
                "next_cursor": {"type": ["string", "null"]}}}), **_errors(400, 401),
             "503": {"description": (
                 "Too many searches with filters at once (code overloaded; at most "
                 "max_searches, 4 by default): try again after Retry-After seconds. Or the "
                 "journal cannot be read (code journal_unavailable)"),
                 "headers": {"Retry-After": {"description": "seconds to wait before trying "
                                             "again", "schema": {"type": "integer"}}},
                 "content": {JSON: {"schema": _ref("Error")}}}},
            parameters=parameters(ORDER_SEARCH, "query", {})),
    },
    "/api/orders/retry": {"post": _op(
        "Retry many failed orders at once (a failure group, a filtered set); each is tried on "
        "its own, those that are not failed are skipped",
        {"200": _json({"type": "object", "properties": {
            "retried": {"type": "array", "items": {"type": "string"}},
            "skipped": _ref("Skipped")}}), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body(ID_LIST))},
    "/api/orders/cancel": {"post": _op(
        "Cancel many unfinished orders at once; finished ones are skipped",
        {"200": _json({"type": "object", "properties": {
            "cancelled": {"type": "array", "items": {"type": "string"}},
            "skipped": _ref("Skipped")}}), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body(ID_LIST))},
    "/api/orders/bulk": {"post": _op(
        "Submit generated demo orders",
        {"201": _json(_ref("Ids"), "Created"), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body(DEMO_ORDERS))},
    "/api/orders/{order_id}": {"get": _op(
        "An order with its tasks and its events",
        {"200": _json({"allOf": [_ref("Order"), {"type": "object", "properties": {
            "events": {"type": "array", "items": _ref("Event")}}}]}),
         **_errors(400, 401, 404, 503)},
        parameters=[_path("order_id")])},
    "/api/orders/{order_id}/cancel": {"post": _op(
        "Cancel an unfinished order",
        {"200": _json(_ref("Order")), **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id")], requestBody=_no_body())},
    "/api/orders/{order_id}/signals/{name}": {"post": _op(
        "Signal an order's wait (a payment confirmed, a parcel delivered): its data becomes "
        "the wait's result for the steps after it; one that comes before the order reaches "
        "the wait is kept until it does. Recorded with who sent it",
        {"200": _json(_ref("SignalResult")),
         **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id"), _path("name"),
                    {"name": IDEMPOTENCY_KEY.name, "in": "header", "required": False,
                     "schema": field_schema(IDEMPOTENCY_KEY, {}),
                     "description": "the same key as the signal taken answers 200 "
                                    "(repeated) instead of 409"}],
        requestBody=_body(SIGNAL, required=False))},
    "/api/orders/{order_id}/rerun": {"post": _op(
        "Run a completed, failed or cancelled order again from a step: it, every step after "
        "it and every step that did not succeed run again, under the same idempotency keys "
        "unless new_keys (audited)",
        {"200": _json({"allOf": [_ref("Order"), {"type": "object", "properties": {
            "rerun": {"type": "array", "items": {"type": "string"},
                      "description": "the steps that run again"}}}]}),
         **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id")], requestBody=_body(RERUN))},
    "/api/orders/{order_id}/replay": {"post": _op(
        "Submit a copy of an order (its data, priority and workflow) as a new order with a "
        "new id, on its workflow's current definition or, pinned, the original's (audited)",
        {"201": {**_json(_ref("Order"), "Created"),
                 "headers": {"Location": {"description": "the new order",
                                          "schema": {"type": "string"}}}},
         **_errors(*BODY_ERRORS, 404, 503)},
        parameters=[_path("order_id")], requestBody=_body(REPLAY, required=False))},
    "/api/orders/{order_id}/retry": {"post": _op(
        "Re-run a failed order from the step that failed",
        {"200": _json(_ref("Order")), **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id")], requestBody=_no_body())},
    "/api/workers": {
        "get": _op("List workers and the hash ring", {"200": _json({"type": "object",
                                                                    "properties": {
            "workers": {"type": "array", "items": _ref("Worker")},
            "ring": _ref("Ring")}}), **_errors(401)}),
        "post": _op(
            "Add workers: threads join at once (201); processes are started and join once "
            "connected (202)",
            {"201": _json(_ref("Ids"), "Created"),
             "202": _json({"type": "object", "properties": {
                 "kind": {"const": "process"}, "message": {"type": "string"},
                 "processes": {"type": "array", "items": {"type": "object", "properties": {
                     "pid": {"type": "integer"}, "name": {"type": "string"}}}}}},
                 "Accepted: `orderflow worker` processes started"),
             **_errors(*BODY_ERRORS, 409)},
            requestBody=_body(NEW_WORKERS, required=False)),
    },
    "/api/workers/{worker_id}/kill": {"post": _op(
        "Crash a worker (simulated); the heartbeat monitor detects it",
        {"202": _json(_ref("WorkerAction"), "Accepted"), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("worker_id")], requestBody=_no_body())},
    "/api/workers/{worker_id}/drain": {"post": _op(
        "Drain a worker: no new work, it leaves after its current task",
        {"202": _json(_ref("WorkerAction"), "Accepted"), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("worker_id")], requestBody=_no_body())},
    "/api/steps": {"get": _op(
        "Every step: its limits, its attempts in flight, its waiting tasks, its pause",
        {"200": _json({"type": "object", "required": ["steps"], "properties": {
            "steps": {"type": "array", "items": _ref("Step")}}}), **_errors(401)})},
    "/api/steps/{step}/pause": {"post": _op(
        "Pause a step: its ready tasks wait (retries too, spending no attempt), attempts "
        "running finish; kept across restarts; 409 if it is paused already",
        {"200": _json(_ref("Step")), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("step")], requestBody={**_body(STEP_PAUSE), "required": False})},
    "/api/steps/{step}/resume": {"post": _op(
        "Resume a paused step (by hand or by its breaker): its waiting tasks go; 409 if it "
        "is not paused",
        {"200": _json(_ref("Step")), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("step")], requestBody=_no_body())},
    "/api/steps/{step}/limits": {"put": _op(
        "Change a step's max_in_flight and rate while it runs (0: no limit); kept across "
        "restarts",
        {"200": _json(_ref("Step")), **_errors(*BODY_ERRORS, 404)},
        parameters=[_path("step")], requestBody=_body(STEP_LIMITS))},
    "/api/schedules": {"get": _op(
        "Every recurring schedule: its cron, workflow, next time and last run",
        {"200": _json({"type": "object", "required": ["schedules"], "properties": {
            "schedules": {"type": "array", "items": _ref("Schedule")}}}), **_errors(401)})},
    "/api/schedules/{name}": {"get": _op(
        "One recurring schedule", {"200": _json(_ref("Schedule")), **_errors(400, 404)},
        parameters=[_path("name")])},
    "/api/workflows": {"get": _op(
        "The workflows an order may name, each with its DAG and its steps' policies",
        {"200": _json({"type": "object", "required": ["workflows"], "properties": {
            "workflows": {"type": "array", "items": _ref("Workflow")}}}), **_errors(401)})},
    "/api/definitions/migrate": {"post": _op(
        "Move the unfinished orders of one workflow definition to another (audited), or "
        "with dry_run list what would happen to each; refused whole (409, naming the order "
        "and the step) when one would run a step whose dependencies did not run",
        {"200": _json({"type": "object", "required": ["count", "orders"], "properties": {
            "from": {"type": "string"}, "to": {"type": "string"},
            "dry_run": {"type": "boolean"}, "run_added": {"type": "boolean"},
            "count": {"type": "integer", "description": "orders moved (or, dry_run, that "
                                                         "would move)"},
            "orders": {"type": "array", "items": _ref("MigrationPlan")}}}),
         **_errors(*BODY_ERRORS, 404, 409, 503)},
        requestBody=_body(MIGRATION))},
    "/api/stats": {"get": _op("Counts by status and stage, steps by state, rates, retries, "
                              "moves, throughput",
                              {"200": _json(_ref("Stats")), **_errors(401)})},
    "/api/history": {"get": _op("The last hour of throughput, queue depth and failures",
                                {"200": _json(_ref("History")), **_errors(401)})},
    "/api/failures": {"get": _op(
        "Failed orders in memory grouped by the step that failed and its reason, biggest first",
        {"200": _json({"type": "object", "properties": {
            "groups": {"type": "array", "items": _ref("FailureGroup")},
            "total": {"type": "integer"}}}), **_errors(401)})},
    "/api/events": {"get": _op(
        "Events in seq order; after < oldest_seq - 1 means some are gone: re-read the state",
        {"200": _json({"type": "object", "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "oldest_seq": {"type": "integer"}, "last_seq": {"type": "integer"}}}),
         **_errors(400, 401)},
        parameters=parameters(EVENT_PAGE, "query", {}))},
    "/api/chaos": {
        "get": _op("Failure rate and latency of the demo handlers",
                   {"200": _json(_ref("Chaos")), **_errors(401)}),
        "put": _op("Change chaos settings (all or nothing)",
                   {"200": _json(_ref("Chaos")), **_errors(*BODY_ERRORS)},
                   requestBody=_body(CHAOS_SETTINGS)),
    },
    "/api/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})},
                                     security=[])},
}


def request_schemas(sets: Sets) -> dict[str, dict]:
    """The JSON Schema of every message a client sends in a body, by its name."""
    return {m.name: message_schema(m, sets)
            for top in REQUEST_MESSAGES for m in messages_in(top)}


def openapi_document(app: Flask) -> dict:
    """The document for this app: its workflows are the `workflow` a client may name."""
    sets: Sets = {"workflows": app.extensions["orderflow"].cluster.workflow_names()}
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "orderflow",
            "version": "0.1.0",
            "description": "Fault-tolerant order processing. Errors are "
                           '{"error": {"code", "message"}}. Live events: Socket.IO on '
                           "/socket.io/ (see dashboard/stream/realtime.py).",
        },
        "paths": {path: {method: _with_door(method, op) for method, op in ops.items()}
                  for path, ops in PATHS.items()},
        "components": {
            "schemas": {**SCHEMAS, "StorableJson": STORABLE_JSON, **request_schemas(sets)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if app.config.get("ORDERFLOW_TOKEN"):
        doc["security"] = [{"bearer": []}]
    return doc
