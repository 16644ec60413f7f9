"""The commands a client may give, shared by the HTTP views and the Socket.IO handlers.

Each takes parsed JSON, checks all of it before touching the cluster (so nothing is
half-applied) and returns the JSON-ready answer. Errors are raised and mapped in errors.py.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from scheduler import Cluster, Conflict, UnknownOrder, validate_order
from scheduler.demo.orders import demo_order

from ..door.errors import invalid
from ..door.parsing import expect_object, int_field, only_fields, optional_list, optional_text

if TYPE_CHECKING:
    from ..workers.hub import WorkerHub

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


def submit_demo_orders(cluster: Cluster, body: Any, who: str) -> dict:
    body = expect_object(body, "the body")
    only_fields(body, ("count", "workflow"))
    count = int_field(body, "count", 1, MAX_BULK_ORDERS)
    workflow = optional_text(body, "workflow")
    rng = random.Random()
    # All or none, with one durable commit for the whole batch.
    ids = cluster.submit_many([demo_order(rng) for _ in range(count)], workflow)
    cluster.record_action(who, "bulk_submit", f"submitted {count:,} demo order"
                          f"{'s' if count != 1 else ''} ({workflow or 'ecommerce'})",
                          target=f"{count} orders", count=count)
    return {"ids": ids}


def add_workers(cluster: Cluster, body: Any, who: str, hub: WorkerHub | None = None) -> dict:
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
        started = hub.spawn(count)
        names = ", ".join(p["name"] for p in started["processes"])
        cluster.record_action(who, "add", f"started {count} worker process"
                              f"{'es' if count != 1 else ''} ({names})", target=names)
        return started
    ids = [cluster.add_worker() for _ in range(count)]
    cluster.record_action(who, "add", f"added worker{'s' if count != 1 else ''} "
                          f"{', '.join(ids)}", target=", ".join(ids),
                          worker=ids[0] if count == 1 else None)
    return {"ids": ids}


def worker_id_from(data: Any) -> str:
    """Socket.IO clients may send the id itself or `{"id": ...}`."""
    if isinstance(data, dict):
        only_fields(data, ("id",))
        data = data.get("id")
    if not isinstance(data, str) or not data:
        raise invalid("a worker id (string) is required")
    return data


def kill_worker(cluster: Cluster, worker_id: str, who: str) -> dict:
    cluster.kill_worker(worker_id)
    timeout = cluster.config.heartbeat_timeout
    kind = next((w["kind"] for w in cluster.workers() if w["id"] == worker_id), "thread")
    crash = "was sent SIGKILL" if kind == "process" else "crashed (simulated)"
    cluster.record_action(who, "kill", f"killed worker {worker_id} ({kind})",
                          target=worker_id, worker=worker_id)
    return {
        "id": worker_id,
        "action": "kill",
        "message": f"worker {worker_id} {crash}; the heartbeat monitor "
                   f"declares it dead within about {timeout:g}s and moves its tasks",
    }


def drain_worker(cluster: Cluster, worker_id: str, who: str) -> dict:
    cluster.drain_worker(worker_id)
    cluster.record_action(who, "drain", f"drained worker {worker_id}", target=worker_id,
                          worker=worker_id)
    return {
        "id": worker_id,
        "action": "drain",
        "message": f"worker {worker_id} takes no new work and leaves after its current task",
    }


def _percent(rate: float) -> str:
    return f"{rate * 100:g}%"


def _latency(pair: list[float]) -> str:
    low, high = pair
    return f"{low:g} ms" if low == high else f"{low:g}–{high:g} ms"


def update_chaos(cluster: Cluster, body: Any, who: str) -> dict:
    """Change the demo handlers' failure rate and latency; the change is audited, saying
    what it was before."""
    body = expect_object(body, "the body")
    only_fields(body, ("failure_rate", "latency_ms", "hang_rate", "stuck_rate"))
    if not body or any(value is None for value in body.values()):
        raise invalid("give failure_rate, latency_ms, hang_rate and/or stuck_rate (not null)")
    before = cluster.chaos.view()
    # Chaos.update checks every value before applying any (ConfigError -> 422).
    after = cluster.chaos.update(**body)
    changes = []
    if after["failure_rate"] != before["failure_rate"]:
        changes.append(f"failure rate {_percent(before['failure_rate'])} → "
                       f"{_percent(after['failure_rate'])}")
    if after["latency_ms"] != before["latency_ms"]:
        changes.append(f"latency {_latency(before['latency_ms'])} → "
                       f"{_latency(after['latency_ms'])}")
    if after["hang_rate"] != before["hang_rate"]:
        changes.append(f"hang rate {_percent(before['hang_rate'])} → "
                       f"{_percent(after['hang_rate'])}")
    if after["stuck_rate"] != before["stuck_rate"]:
        changes.append(f"stuck rate {_percent(before['stuck_rate'])} → "
                       f"{_percent(after['stuck_rate'])}")
    what = "set chaos: " + ("; ".join(changes) if changes else "unchanged "
                            f"(failure rate {_percent(after['failure_rate'])}, latency "
                            f"{_latency(after['latency_ms'])})")
    cluster.record_action(who, "chaos", what, target="chaos", **after)
    return after


def order_command(cluster: Cluster, order_id: str, command: str, who: str) -> dict:
    """Cancel an unfinished order or retry a failed one, audited; returns the order."""
    if command == "cancel":
        cluster.cancel_order(order_id)
    else:
        cluster.retry_order(order_id)
    done = "cancelled" if command == "cancel" else "retried"
    cluster.record_action(who, command, f"{done} order {order_id}", target=order_id,
                          order_id=order_id)
    return cluster.get_order(order_id)


def bulk_order_command(cluster: Cluster, body: Any, command: str, who: str) -> dict:
    """Cancel or retry many orders in one request (a failure group, a filtered set): each
    is tried on its own; those in a state that does not allow it are skipped with the
    reason. One audit event says how many."""
    body = expect_object(body, "the body")
    only_fields(body, ("ids",))
    ids = optional_list(body, "ids", MAX_BULK_ORDERS, item_max=MAX_KEY_LENGTH)
    if not ids:
        raise invalid("ids must be a non-empty list of order ids")
    run = cluster.cancel_order if command == "cancel" else cluster.retry_order
    done, skipped = [], []
    for order_id in dict.fromkeys(ids):  # each once, in the order given
        try:
            run(order_id)
        except (Conflict, UnknownOrder) as exc:
            skipped.append({"id": order_id, "reason": str(exc)})
        else:
            done.append(order_id)
    verb = "cancelled" if command == "cancel" else "retried"
    what = f"{verb} {len(done):,} of {len(ids):,} selected orders"
    if skipped:
        what += f" ({len(skipped):,} skipped)"
    cluster.record_action(who, f"bulk_{command}", what, target=f"{len(done)} orders",
                          count=len(done), skipped=len(skipped))
    return {verb: done, "skipped": skipped}
