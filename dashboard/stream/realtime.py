"""Socket.IO: the live event stream and the commands a dashboard may send.

Contract (namespace "/", JSON only):

Server to client
  `snapshot`  sent shortly (within one stream interval) after connecting, after a `resync`
              request, and whenever the client fell behind or the event history moved past
              the stream::

                  {"stats": cluster.stats(), "workers": cluster.workers(), "ring": cluster.ring(),
                   "orders": cluster.orders(limit=SNAPSHOT_ORDERS),
                   "events": [<= SNAPSHOT_EVENTS recent events],
                   "last_seq": int, "chaos": {"failure_rate", "latency_ms": [min, max], ...},
                   "app": {"name", "chaos"},
                   "incidents": [cluster.incidents(): every incident kept, newest first],
                   "config": {"heartbeat_interval", "heartbeat_timeout", "max_retries",
                              "workers_interval"},
                   "limits": {"orders", "orders_page", "initial_orders", "log_events",
                              "incidents"},
                   "workflows": cluster.workflows(),
                   "workflow_details": cluster.describe_workflows(),
                   "server": {"role", "epoch", "leader", "leader_name", "server"}}

              The state is at least as new as `last_seq`: apply only events with a greater
              seq afterwards. A snapshot replaces everything the client held.
              `limits` are the caps a dashboard works with, so it keeps no copies: orders
              to hold (the cluster's finished_order_history), orders per GET /api/orders
              page (its largest), orders a fresh page loads (DASHBOARD_INITIAL_ORDERS),
              notable events its log keeps (DASHBOARD_LOG_EVENTS) and incidents the server
              keeps. `workflows` maps each
              workflow to {step: [steps it waits for]}: a step becomes ready once all of
              them succeeded (a workflow may fan out and in; it is not a chain).
              `workflow_details` lists the same workflows as GET /api/workflows does
              ([{"name", "steps": [{"name", "deps", "timeout", "retries", "max_in_flight",
              "rate", "tags", ...}]}]): the names a submit form offers, and each step's
              policy for the order's DAG. `server` says which server leads: with several
              servers on one PostgreSQL database, `leader` is the leader's URL, `epoch` its
              leadership term and `server` this server's URL (a snapshot comes only from
              the leader: a standby refuses connections); a server alone on its journal
              answers role "leader" with the rest null. `app` names the app the server
              runs and says whether the demo's chaos knobs drive its steps (`chaos`).
              `incidents` are the records of deaths, drains, restarts and new leaders
              (scheduler/runtime/incidents.py: {"id" (the seq of the event that opened it),
              "kind", "ts", "title", "message", "worker", "pinned", "counts", "caused" (the
              first events it caused), "caused_total", ...}): all of them, whatever the
              events that followed, so a restart stays visible after its recoveries.
  `incidents` the incidents that changed since the last message (opened, or counting what
              they caused), newest first, sent before the `events` that changed them;
              each replaces the client's record of the same id.
  `events`    a list of the core's event dicts (`seq`, `ts`, `type`, `order_id`, `step`,
              `worker_id`, `attempt`, `message`, ...; `type` is one of EVENT_TYPES in
              scheduler/engine/events.py), ascending seq, at most one message
              per 100 ms (split into several when very large), from one background task.
              A jump in seq means messages were skipped: wait for the snapshot that follows,
              or send `resync`. A failed attempt's `traceback` stays out of the stream (and
              the snapshot): the order view reads it from GET /api/orders/<id>.
  `workers`   about every 500 ms (config.workers_interval): {"workers": cluster.workers(),
              "stats": cluster.stats(), "chaos": the chaos knobs}, so heartbeat ages stay
              live between events, a change of chaos shows on every page, and a page that
              hears nothing for longer knows its numbers are old.

Client to server (each answers through the Socket.IO acknowledgement)
  `submit_order`  the body of POST /api/orders      -> {"order": {...}}
  `add_worker`    {"count": 1..32} or nothing       -> {"ids": [...]}
                  {"count", "kind": "process"}      -> {"kind", "processes", "message"}
  `kill_worker`   "w-1" or {"id": "w-1"}            -> {"id", "action", "message"}
  `drain_worker`  "w-1" or {"id": "w-1"}            -> {"id", "action", "message"}
  `resync`        nothing                           -> {"ok": true}; a `snapshot` follows
  A refused command answers {"error": {"code", "message"}, "status": <the HTTP status>},
  with the same codes and messages as the HTTP API.

Connecting to a server with a token needs it on the handshake (`Authorization: Bearer` or a
`token` query parameter; refused with 401 before the upgrade otherwise, see gate.py), or, for
clients that reach the app without the gate (the test client), `auth={"token": ...}`. Beyond
the connection caps a handshake gets 429 / 503. Browsers on another origin are refused unless
CORS_ORIGINS lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, SocketIO

from ..api import actions
from ..door.audit import actor
from ..door.auth import socket_auth_ok
from ..door.errors import describe, error_body, invalid
from ..door.parsing import refuse_unstorable
from ..workers.hub import hub_of
from .push import EventStream


def _services():
    return current_app.extensions["orderflow"]


def acknowledged(handler: Callable[..., dict]) -> Callable[..., dict]:
    """Turn any error into the HTTP API's error shape in the acknowledgement."""

    @functools.wraps(handler)
    def wrapper(*args: Any) -> dict:
        try:
            if len(args) > 1:
                raise invalid("send one JSON argument")
            data = args[0] if args else None
            refuse_unstorable(data)  # text no journal can hold, named (422)
            return handler(data)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, none crashes
            error = describe(exc)
            return {**error_body(error), "status": error.status}

    return wrapper


def register(socketio: SocketIO, stream: EventStream) -> None:
    @socketio.on("connect")
    def on_connect(auth: Any = None) -> None:
        if not socket_auth_ok(auth):
            raise ConnectionRefusedError("unauthorized: a valid token is required")
        stream.connect(request.sid)

    @socketio.on("disconnect")
    def on_disconnect(reason: Any = None) -> None:
        stream.disconnect(request.sid)

    @socketio.on("resync")
    @acknowledged
    def on_resync(data: Any = None) -> dict:
        stream.resync(request.sid)
        return {"ok": True}

    @socketio.on("submit_order")
    @acknowledged
    def on_submit_order(data: Any = None) -> dict:
        order, _ = actions.submit_order(_services().cluster, data)
        return {"order": order}

    @socketio.on("add_worker")
    @acknowledged
    def on_add_worker(data: Any = None) -> dict:
        body = {} if data is None else data  # nothing: one thread worker
        return actions.add_workers(_services().cluster, body, actor(), hub_of(current_app))

    @socketio.on("kill_worker")
    @acknowledged
    def on_kill_worker(data: Any = None) -> dict:
        return actions.kill_worker(_services().cluster, actions.worker_id_from(data), actor())

    @socketio.on("drain_worker")
    @acknowledged
    def on_drain_worker(data: Any = None) -> dict:
        return actions.drain_worker(_services().cluster, actions.worker_id_from(data), actor())
