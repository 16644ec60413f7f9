"""The commands a client may give, shared by the HTTP views and the Socket.IO handlers.

Each takes parsed JSON, reads it once with its message (bodies.py; an order's and the chaos
settings' are the engine's and the demo's), all of it before touching the cluster (so nothing
is half-applied), and returns the JSON-ready answer. Errors are raised and mapped in
errors.py.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from scheduler import Cluster, Conflict, UnknownOrder, UnknownStep
from scheduler.demo.orders import demo_order

from .bodies import (
    DEMO_ORDERS,
    ID_LIST,
    MIGRATION,
    NEW_WORKERS,
    REPLAY,
    RERUN,
    STEP_LIMITS,
    STEP_PAUSE,
    WORKER_REF,
)

if TYPE_CHECKING:
    from ..workers.hub import WorkerHub


def submit_order(cluster: Cluster, body: Any,
                 idempotency_key: str | None = None) -> tuple[dict, bool]:
    """(the order, whether it was created now). A known idempotency key returns its order.
    The body and the key are read once, by the engine (`Cluster.submit_idempotent`)."""
    order_id, created = cluster.submit_idempotent(body, idempotency_key=idempotency_key)
    return cluster.get_order(order_id), created


def submit_demo_orders(cluster: Cluster, body: Any, who: str) -> dict:
    request = DEMO_ORDERS.read(body)
    count, workflow = request["count"], request.get("workflow")
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
    request = NEW_WORKERS.read(body)
    count, kind = request["count"], request["kind"]
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
    """Socket.IO clients may send the id itself or `{"id": ...}` (its text was checked at
    the socket's door, realtime.acknowledged)."""
    return WORKER_REF.check(data if isinstance(data, dict) else {"id": data}, "")["id"]


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


def _step_view(cluster: Cluster, step: str) -> dict:
    view = next((s for s in cluster.steps() if s["name"] == step), None)
    if view is None:
        raise UnknownStep(step)
    return view


def pause_step(cluster: Cluster, step: str, body: Any, who: str) -> dict:
    """Pause a step (audited); its view. 404 unknown step, 409 already paused."""
    why = STEP_PAUSE.read(body).get("why", "")
    cluster.pause_step(step, who, why)
    said = f": {why}" if why else ""
    cluster.record_action(who, "pause", f"paused step {step}{said}", target=step)
    return _step_view(cluster, step)


def resume_step(cluster: Cluster, step: str, who: str) -> dict:
    """Resume a paused step (audited); its view. 404 unknown step, 409 not paused."""
    cluster.resume_step(step, who)
    cluster.record_action(who, "resume", f"resumed step {step}", target=step)
    return _step_view(cluster, step)


def _limit_text(value: float | None, unit: str) -> str:
    return "none" if value is None else f"{value:g}{unit}"


def set_step_limits(cluster: Cluster, step: str, body: Any, who: str) -> dict:
    """Change a step's max_in_flight and/or rate while it runs (0: no limit), audited with
    what they were; its view. 404 unknown step, 422 a bad value (nothing changed)."""
    request = STEP_LIMITS.read(body)
    before = _step_view(cluster, step)
    after = {k: before[k] for k in ("max_in_flight", "rate")}
    for key, value in request.items():
        after[key] = value or None
    cluster.set_step_limits(step, who, **after)
    changes = [f"{key} {_limit_text(before[key], '')} → {_limit_text(after[key], '')}"
               for key in ("max_in_flight", "rate") if before[key] != after[key]]
    what = (f"set limits of step {step}: " + ("; ".join(changes) or "unchanged"))
    cluster.record_action(who, "limits", what, target=step, **after)
    return _step_view(cluster, step)


def _percent(rate: float) -> str:
    return f"{rate * 100:g}%"


def _latency(pair: list[float]) -> str:
    low, high = pair
    return f"{low:g} ms" if low == high else f"{low:g}–{high:g} ms"


def update_chaos(cluster: Cluster, body: Any, who: str) -> dict:
    """Change the demo handlers' failure rate and latency; the change is audited, saying
    what it was before."""
    before = cluster.chaos.view()
    # Chaos.apply reads the body once, whole, before applying any of it (ConfigError -> 422).
    after = cluster.chaos.apply(body)
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


def send_signal(cluster: Cluster, order_id: str, name: str, body: Any, key: str | None,
                who: str) -> dict:
    """Deliver the signal `name` to an order's wait, recorded with who sent it (the
    `signal_received` event, or `signal_refused` with a 409); returns what became of it
    (`outcome`: delivered, kept until the order reaches its wait, or repeated: the same
    Idempotency-Key again) and the order as it is now."""
    outcome = cluster.signal(order_id, name, body, key=key, who=who)
    return {"signal": name, "outcome": outcome, "order": cluster.get_order(order_id)}


def bulk_order_command(cluster: Cluster, body: Any, command: str, who: str) -> dict:
    """Cancel or retry many orders in one request (a failure group, a filtered set): each
    is tried on its own; those in a state that does not allow it are skipped with the
    reason. One audit event says how many."""
    ids = ID_LIST.read(body)["ids"]
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


def migrate_orders(cluster: Cluster, body: Any, who: str) -> dict:
    """Move the unfinished orders of one workflow definition to another (or, with
    `dry_run`, say what would happen to each), audited with how many moved; refused whole
    (409) when one order cannot move."""
    asked = MIGRATION.read(body)
    plans = cluster.migrate_orders(asked["from"], asked["to"], run_added=asked["run_added"],
                                   dry_run=asked["dry_run"], order_ids=asked.get("orders"))
    result = {"from": asked["from"], "to": asked["to"], "dry_run": asked["dry_run"],
              "run_added": asked["run_added"], "count": len(plans), "orders": plans}
    if not asked["dry_run"]:
        skipped = sum(len(p["skipped"]) for p in plans)
        dropped = sum(len(p["dropped"]) for p in plans)
        what = (f"moved {len(plans):,} unfinished orders from {asked['from']} to "
                f"{asked['to']} ({skipped:,} steps skipped, {dropped:,} dropped"
                f"{'; added steps run after the fact' if asked['run_added'] else ''})")
        cluster.record_action(who, "migrate", what, target=f"{len(plans)} orders",
                              count=len(plans), source=asked["from"], to=asked["to"],
                              run_added=asked["run_added"])
    return result


def rerun_order(cluster: Cluster, order_id: str, body: Any, who: str) -> dict:
    """Run a finished order again from a step, audited (saying whether under new keys);
    returns the order and the steps that run again."""
    asked = RERUN.read(body)
    again = cluster.rerun_order(order_id, asked["step"], new_keys=asked["new_keys"])
    keys = "new idempotency keys" if asked["new_keys"] else "the same idempotency keys"
    cluster.record_action(who, "rerun", f"ran order {order_id} again from step "
                          f"{asked['step']} ({', '.join(again)}; {keys})", target=order_id,
                          order_id=order_id, from_step=asked["step"],
                          new_keys=asked["new_keys"])
    return {**cluster.get_order(order_id), "rerun": again}


def replay_order(cluster: Cluster, order_id: str, body: Any, who: str) -> dict:
    """Submit a copy of an order as a new one, audited in both orders' timelines; returns
    the new order."""
    asked = REPLAY.read(body)
    new_id = cluster.replay_order(order_id, pinned=asked["pinned"])
    how = "on its pinned definition" if asked["pinned"] else "on the current definition"
    for about in (order_id, new_id):
        cluster.record_action(who, "replay", f"replayed order {order_id} as new order "
                              f"{new_id} ({how})", target=about, order_id=about,
                              original=order_id, replay=new_id, pinned=asked["pinned"])
    return cluster.get_order(new_id)
