"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json.

Written by hand next to the routes; a test checks that every route the app registers is
described here (and nothing else), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from scheduler import OrderStatus, TaskState
from scheduler.engine.states import OrderStage

from .actions import MAX_BULK_ORDERS, MAX_NEW_WORKERS

JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    reasons = {
        400: ("Malformed JSON or query parameter, or a path or query parameter holding text "
              "no journal can store (a NUL, a lone surrogate; code invalid_parameter)"),
        401: "Missing or wrong bearer token",
        404: "Unknown id",
        409: "The object's state does not allow this",
        413: "Body larger than 1 MiB",
        415: "Body is not application/json",
        422: "Well-formed JSON with invalid values",
        503: ("The journal cannot be written, or a read of it failed (code "
              "journal_unavailable): nothing is accepted until it is fixed; or this server "
              "does not lead (code standby, with role and leader beside the error): send it "
              "to the leader; or the order is accepted but not committed yet (code "
              "commit_pending, e.g. an Idempotency-Key posted again while its first request "
              "waits for the commit): ask again after Retry-After"),
    }
    return {str(s): {"description": reasons[s], "content": {JSON: {"schema": _ref("Error")}}}
            for s in statuses}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": schema}}}


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
    "Item": {
        "type": "object",
        "required": ["sku", "qty", "price"],
        "additionalProperties": False,
        "properties": {
            "sku": {"type": "string", "minLength": 1, "maxLength": 200},
            "qty": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "price": {"type": "number", "minimum": 0, "maximum": 1e9},
        },
    },
    "OrderInput": {
        "type": "object",
        "required": ["customer", "items"],
        "additionalProperties": False,
        "properties": {
            "customer": {"type": "string", "minLength": 1, "maxLength": 200},
            "items": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ref("Item")},
            "workflow": {"type": "string",
                         "description": "one of GET /api/workflows; default: ecommerce"},
            "priority": {"type": "integer", "minimum": -100, "maximum": 100, "default": 0,
                         "description": "higher first among orders at the same stage "
                                        "(e.g. express shipping)"},
        },
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
            "priority": {"type": "integer"},
            "customer": {"type": "string"},
            "data": _ref("OrderInput"),
            "tasks": {"type": "object", "additionalProperties": _ref("Task")},
            "submitted_at": {"type": "number"},
            "finished_at": {"type": ["number", "null"]},
            "terminal": {"type": "boolean"},
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
            "held_by_limits": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "ready tasks a step's limits hold back, by step"},
            "unroutable": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "ready tasks no live worker can run (no handler, "
                                          "or a tag nobody offers), by step"},
            "throughput": {"type": "number", "description": "orders completed/s, last minute"},
            "last_seq": {"type": "integer"},
            "now": {"type": "number", "description": "the server's clock (Unix time)"},
        },
    },
    "Chaos": {
        "type": "object",
        "properties": {
            "failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "hang_rate": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "share of demo attempts that hang until their time "
                                         "limit cancels them"},
            "stuck_rate": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "share of the server's demo attempts that ignore "
                                          "their cancellation and return 3 s after their time "
                                          "limit (their thread is abandoned and replaced)"},
            "latency_ms": {"type": "array", "minItems": 2, "maxItems": 2,
                           "items": {"type": "number", "minimum": 0, "maximum": 60000}},
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
        },
    },
    "Workflow": {
        "type": "object",
        "required": ["name", "steps"],
        "properties": {
            "name": {"type": "string", "description": "the `workflow` of POST /api/orders"},
            "steps": {"type": "array", "items": _ref("WorkflowStep"),
                      "description": "in a topological order: every step after those it "
                                     "waits for"},
        },
    },
    "Ids": {"type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
    "IdList": {"type": "object", "required": ["ids"], "additionalProperties": False,
               "properties": {"ids": {"type": "array", "minItems": 1,
                                      "maxItems": MAX_BULK_ORDERS,
                                      "items": {"type": "string", "minLength": 1,
                                                "maxLength": 200}}}},
    "Skipped": {"type": "array", "description": "orders whose state did not allow it",
                "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "reason": {"type": "string"}}}},
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

NO_BODY = {"description": "No body, or an empty JSON object",
           "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}}}

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
            parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "schema": {"type": "string", "maxLength": 200}}],
            requestBody=_body(_ref("OrderInput"))),
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
            parameters=[
                _query("status", {"enum": [s.value for s in OrderStatus]}, "only this status"),
                _query("workflow", {"type": "string", "maxLength": 200}, "only this workflow"),
                _query("customer", {"type": "string", "maxLength": 200},
                       "a part of the customer (any case)"),
                _query("error", {"type": "string", "maxLength": 200},
                       "a part of any step's last error (any case)"),
                _query("since", {"type": "number"}, "submitted at or after (Unix time)"),
                _query("until", {"type": "number"}, "submitted before (Unix time)"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                       "page size"),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
            ]),
    },
    "/api/orders/retry": {"post": _op(
        "Retry many failed orders at once (a failure group, a filtered set); each is tried on "
        "its own, those that are not failed are skipped",
        {"200": _json({"type": "object", "properties": {
            "retried": {"type": "array", "items": {"type": "string"}},
            "skipped": _ref("Skipped")}}), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body(_ref("IdList")))},
    "/api/orders/cancel": {"post": _op(
        "Cancel many unfinished orders at once; finished ones are skipped",
        {"200": _json({"type": "object", "properties": {
            "cancelled": {"type": "array", "items": {"type": "string"}},
            "skipped": _ref("Skipped")}}), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body(_ref("IdList")))},
    "/api/orders/bulk": {"post": _op(
        "Submit generated demo orders",
        {"201": _json(_ref("Ids"), "Created"), **_errors(*BODY_ERRORS, 503)},
        requestBody=_body({"type": "object", "required": ["count"], "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": MAX_BULK_ORDERS},
            "workflow": {"type": "string",
                         "description": "one of GET /api/workflows; default: ecommerce"}}}))},
    "/api/orders/{order_id}": {"get": _op(
        "An order with its tasks and its events",
        {"200": _json({"allOf": [_ref("Order"), {"type": "object", "properties": {
            "events": {"type": "array", "items": _ref("Event")}}}]}),
         **_errors(400, 401, 404, 503)},
        parameters=[_path("order_id")])},
    "/api/orders/{order_id}/cancel": {"post": _op(
        "Cancel an unfinished order",
        {"200": _json(_ref("Order")), **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id")], requestBody={**NO_BODY, "required": False})},
    "/api/orders/{order_id}/retry": {"post": _op(
        "Re-run a failed order from the step that failed",
        {"200": _json(_ref("Order")), **_errors(*BODY_ERRORS, 404, 409, 503)},
        parameters=[_path("order_id")], requestBody={**NO_BODY, "required": False})},
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
            requestBody=_body({"type": "object", "properties": {
                "count": {"type": "integer", "minimum": 1, "maximum": MAX_NEW_WORKERS,
                          "default": 1},
                "kind": {"enum": ["thread", "process"], "default": "thread"}}}, required=False)),
    },
    "/api/workers/{worker_id}/kill": {"post": _op(
        "Crash a worker (simulated); the heartbeat monitor detects it",
        {"202": _json(_ref("WorkerAction"), "Accepted"), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("worker_id")], requestBody={**NO_BODY, "required": False})},
    "/api/workers/{worker_id}/drain": {"post": _op(
        "Drain a worker: no new work, it leaves after its current task",
        {"202": _json(_ref("WorkerAction"), "Accepted"), **_errors(*BODY_ERRORS, 404, 409)},
        parameters=[_path("worker_id")], requestBody={**NO_BODY, "required": False})},
    "/api/workflows": {"get": _op(
        "The workflows an order may name, each with its DAG and its steps' policies",
        {"200": _json({"type": "object", "required": ["workflows"], "properties": {
            "workflows": {"type": "array", "items": _ref("Workflow")}}}), **_errors(401)})},
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
        parameters=[
            _query("after", {"type": "integer", "minimum": 0, "default": 0}, "last seq seen"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
                   "page size"),
        ])},
    "/api/chaos": {
        "get": _op("Failure rate and latency of the demo handlers",
                   {"200": _json(_ref("Chaos")), **_errors(401)}),
        "put": _op("Change chaos settings (all or nothing)",
                   {"200": _json(_ref("Chaos")), **_errors(*BODY_ERRORS)},
                   requestBody=_body(_ref("Chaos"))),
    },
    "/api/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})},
                                     security=[])},
}


def openapi_document(app: Flask) -> dict:
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "orderflow",
            "version": "0.1.0",
            "description": "Fault-tolerant order processing. Errors are "
                           '{"error": {"code", "message"}}. Live events: Socket.IO on '
                           "/socket.io/ (see dashboard/stream/realtime.py).",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if app.config.get("ORDERFLOW_TOKEN"):
        doc["security"] = [{"bearer": []}]
    return doc
