"""The commands a client may give, shared by the HTTP views and the Socket.IO handlers.

Each takes parsed JSON, checks all of it before touching the cluster (so nothing is
half-applied) and returns the JSON-ready answer. Errors are raised and mapped in errors.py.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from scheduler import Cluster, Conflict, validate_order
from scheduler.demo.orders import demo_order

from .errors import invalid
from .parsing import expect_object, int_field, only_fields, optional_text

if TYPE_CHECKING:
    from .worker_hub import WorkerHub

MAX_BULK_ORDERS = 10_000
MAX_NEW_WORKERS = 32
MAX_KEY_LENGTH = 200


def submit_order(cluster: Cluster, body: Any,
                 idempotency_key: str | None = None) -> tuple[dict, bool]:
    """(the order, whether it was created now). A known idempotency key returns its order."""
    body = expect_object(body, "an order")
    validate_order(body)  # a bad body is refused even when its key is known
    workflow = optional_text(body, "workflow")
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH:
            raise invalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        existing = cluster.find_by_idempotency_key(idempotency_key)
        if existing is not None:
            return cluster.get_order(existing), False
    try:
        order_id = cluster.submit(body, workflow, idempotency_key=idempotency_key)
    except Conflict:
        # Two requests with the same key raced between the lookup and the submit.
        existing = cluster.find_by_idempotency_key(idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return cluster.get_order(existing), False
    return cluster.get_order(order_id), True


def submit_demo_orders(cluster: Cluster, body: Any) -> dict:
    body = expect_object(body, "the body")
    only_fields(body, ("count", "workflow"))
    count = int_field(body, "count", 1, MAX_BULK_ORDERS)
    workflow = optional_text(body, "workflow")
    rng = random.Random()
    # All or none, with one durable commit for the whole batch.
    return {"ids": cluster.submit_many([demo_order(rng) for _ in range(count)], workflow)}


def add_workers(cluster: Cluster, body: Any, hub: WorkerHub | None = None) -> dict:
    """Thread workers join at once: {"ids"}. Process workers (`"kind": "process"`) are
    started and join once connected: {"kind", "processes": [{"pid", "name"}], "message"}."""
    body = expect_object(body if body is not None else {}, "the body")
    only_fields(body, ("count", "kind"))
    count = int_field(body, "count", 1, MAX_NEW_WORKERS, default=1)
    kind = body.get("kind", "thread")
    if kind not in ("thread", "process"):
        raise invalid("kind must be \"thread\" or \"process\"")
    if kind == "process":
        if hub is None:
            raise Conflict("this server cannot start worker processes")
        return hub.spawn(count)
    return {"ids": [cluster.add_worker() for _ in range(count)]}


def worker_id_from(data: Any) -> str:
    """Socket.IO clients may send the id itself or `{"id": ...}`."""
    if isinstance(data, dict):
        only_fields(data, ("id",))
        data = data.get("id")
    if not isinstance(data, str) or not data:
        raise invalid("a worker id (string) is required")
    return data


def kill_worker(cluster: Cluster, worker_id: str) -> dict:
    cluster.kill_worker(worker_id)
    timeout = cluster.config.heartbeat_timeout
    kind = next((w["kind"] for w in cluster.workers() if w["id"] == worker_id), "thread")
    crash = "was sent SIGKILL" if kind == "process" else "crashed (simulated)"
    return {
        "id": worker_id,
        "action": "kill",
        "message": f"worker {worker_id} {crash}; the heartbeat monitor "
                   f"declares it dead within about {timeout:g}s and moves its tasks",
    }


def drain_worker(cluster: Cluster, worker_id: str) -> dict:
    cluster.drain_worker(worker_id)
    return {
        "id": worker_id,
        "action": "drain",
        "message": f"worker {worker_id} takes no new work and leaves after its current task",
    }
