"""Orders: submit (one, idempotently, or a bulk of demo orders), list, inspect, cancel, retry."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from scheduler import Cluster
from scheduler.engine.orders import SIGNAL
from scheduler.engine.records import OrderQuery

from ..door.audit import actor
from ..door.parsing import json_body, read_query
from . import actions
from .bodies import NO_BODY, ORDER_SEARCH

bp = Blueprint("orders", __name__, url_prefix="/api/orders")


def _cluster() -> Cluster:
    return current_app.extensions["orderflow"].cluster


def _no_body() -> None:
    """Commands without parameters accept no body, or an empty JSON object."""
    NO_BODY.read(json_body(required=False))


@bp.post("")
def submit():
    key = request.headers.get("Idempotency-Key")
    order, created = actions.submit_order(_cluster(), json_body(), key)
    response = jsonify(order)
    response.status_code = 201 if created else 200
    response.headers["Location"] = url_for("orders.detail", order_id=order["id"])
    return response


@bp.post("/bulk")
def submit_bulk():
    return actions.submit_demo_orders(_cluster(), json_body(), actor()), 201


@bp.get("")
def index():
    """Newest first, filtered by any of status, workflow, customer (a part of it), error (a
    part of any step's last error), sku (a part of an item's), text (a part of any of those
    or of the id) and submission time (since <= submitted_at < until, Unix seconds). The
    cursor is the `number` of the last order of the previous page. Orders in memory are
    searched as they are now, the rest in the journal."""
    cluster = _cluster()
    asked = read_query(ORDER_SEARCH)
    query = OrderQuery(**{name: asked.get(name) for name in (
        "status", "workflow", "customer", "error", "sku", "text", "since", "until")})
    limit = asked["limit"]
    page = cluster.search_orders(query, limit=limit + 1, before=asked.get("cursor"))
    more = len(page) > limit
    page = page[:limit]
    return {"orders": page, "next_cursor": str(page[-1]["number"]) if more else None}


@bp.post("/retry")
def retry_many():
    """Retry many failed orders at once: {"ids": [...]} -> {"retried", "skipped"}."""
    return actions.bulk_order_command(_cluster(), json_body(), "retry", actor())


@bp.post("/cancel")
def cancel_many():
    """Cancel many unfinished orders at once: {"ids": [...]} -> {"cancelled", "skipped"}."""
    return actions.bulk_order_command(_cluster(), json_body(), "cancel", actor())


@bp.get("/<order_id>")
def detail(order_id: str):
    cluster = _cluster()
    order = cluster.get_order(order_id)
    return {**order, "events": cluster.story(order_id)}


@bp.post("/<order_id>/cancel")
def cancel(order_id: str):
    _no_body()
    return actions.order_command(_cluster(), order_id, "cancel", actor())


@bp.post("/<order_id>/signals/<name>")
def signal(order_id: str, name: str):
    """The outside world's word for an order's wait (a payment confirmed, a parcel
    delivered): `{"data": ...}` becomes the wait's result. 200 (a repeat of the same
    Idempotency-Key too), 404 unknown order, 409 a second signal or a wait that is over
    (recorded), 422 a name the order never waits for (naming those it has)."""
    key = request.headers.get("Idempotency-Key")
    body = json_body(required=False)  # no body: {}
    if body is None:  # a JSON null, which Cluster.signal would take for no body: 422
        SIGNAL.read(body)
    return actions.send_signal(_cluster(), order_id, name, body, key, actor())


@bp.post("/<order_id>/rerun")
def rerun(order_id: str):
    """Run a finished order again from a step: {"step", "new_keys"} -> the order, with
    `rerun` (the steps that run again)."""
    return actions.rerun_order(_cluster(), order_id, json_body(), actor())


@bp.post("/<order_id>/replay")
def replay(order_id: str):
    """Submit a copy of an order as a new one: 201 with the new order."""
    order = actions.replay_order(_cluster(), order_id, json_body(required=False), actor())
    response = jsonify(order)
    response.status_code = 201
    response.headers["Location"] = url_for("orders.detail", order_id=order["id"])
    return response


@bp.post("/<order_id>/retry")
def retry(order_id: str):
    _no_body()
    return actions.order_command(_cluster(), order_id, "retry", actor())
