"""The app a chaos run's servers schedule and its remote workers run: the built-in demo
with a payment gateway's quota on its payment step (a concurrency limit, held to by the
checker, invariants.py) and a gateway that takes a moment, so that stalls, deaths and
restarts catch payments in flight; a saga (`SAGA`): a charge refunded when reserving the
stock (never possible for some items) or shipping fails for good; an order's wait for the
outside world (`WAITS`): after the charge it waits for `payment_confirmed` (which the driver
sends for some orders, early or late, and the rest time out and go on), then ships, and asks
for a review a moment later (a delayed step); and a recurring schedule (`RECONCILE`, every
2 s) that the leader fires through restarts and failovers, each time once (the checker's
schedule rules). Workers the server starts run the plain demo handlers (they have no
reserve, refund, review nor reconcile: the others run them).

    orderflow serve --app scheduler.chaos.app:app
    orderflow worker --app scheduler.chaos.app:app

`app_v2` is the same code deployed as another version (`version="chaos-2"`): the run
deploys it at its first server restart (with --ha: each killed leader comes back with it),
and the orders in flight then finish on workers of the first version (a rolling deploy,
faults.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import threading

from ..demo.app import demo_app
from ..demo.handlers import Chaos
from ..engine.workflow import Wait, Workflow
from ..steps.app import App
from ..steps.context import Handler, TaskContext, TaskError

# Low enough that a run's load reaches it: its remote and thread workers have more slots.
PAYMENT_LIMIT = 4
# Seconds a payment waits for the gateway (uniform), on top of the demo's latency: at 25
# orders/s about 1.5 payments are in flight, up to the limit in bursts and spikes.
GATEWAY_SECONDS = (0.03, 0.09)


def _behind_a_gateway(payment: Handler) -> Handler:
    rng, lock = random.Random(), threading.Lock()

    def gateway_payment(ctx: TaskContext) -> dict:
        """The demo's payment behind a gateway that takes a moment (and is cancellable)."""
        with lock:
            wait = rng.uniform(*GATEWAY_SECONDS)
        if not ctx.sleep(wait):
            raise TaskError("cancelled while waiting for the gateway")
        return payment(ctx)

    return gateway_payment


# charge, then reserve the stock and ship; refund the charge if a later step fails for
# good. Some items are out of stock: their reservation fails at every attempt, so a run
# refunds about a tenth of its saga orders whatever its faults (the driver's SKUs are
# SKU-0 .. SKU-49).
SAGA = Workflow.define("ecommerce_saga",
                       [("payment", []), ("reserve", ["payment"]), ("shipping", ["reserve"])],
                       compensations={"payment": "refund"})
OUT_OF_STOCK = frozenset({"SKU-3", "SKU-17", "SKU-23", "SKU-31", "SKU-44"})
# The gateway's charges reconciled every 2 s (nightly in a shop): a run's restarts and
# failovers come between its times.
RECONCILE = Workflow.define("reconcile_charges", [("reconcile", [])])
RECONCILE_CRON = "*/2 * * * * *"


# Seconds an order waits for its payment_confirmed before it goes on without one, and a
# review waits after shipping: short, so a run's orders settle within it.
CONFIRM_TIMEOUT = 2.0
REVIEW_DELAY = 0.5
WAITS = Workflow.define(
    "ecommerce_waits",
    [("payment", []), ("payment_confirmed", ["payment"]), ("shipping", ["payment_confirmed"]),
     ("review", ["shipping"])],
    compensations={"payment": "refund"},
    waits=[Wait("payment_confirmed", CONFIRM_TIMEOUT, "continue")])


def _review(chaos: Chaos) -> Handler:
    def review(ctx: TaskContext) -> dict:
        """Ask the customer for a review, a moment after shipping (a delayed step)."""
        delay, fails, _ = chaos.draw()
        if delay and not ctx.sleep(delay):
            raise TaskError("worker stopped")
        if fails:
            raise TaskError(f"mail service unavailable (simulated, attempt {ctx.attempt})")
        return {"asked": True, "confirmed": ctx.results.get("payment_confirmed") is not None}

    return review


def _reserve(chaos: Chaos) -> Handler:
    def reserve(ctx: TaskContext) -> dict:
        """Reserve the order's items: never possible for an item out of stock."""
        delay, fails, _ = chaos.draw()
        if delay and not ctx.sleep(delay):
            raise TaskError("worker stopped")
        missing = sorted({i.get("sku") for i in ctx.order.get("items", [])} & OUT_OF_STOCK)
        if missing:
            raise TaskError(f"out of stock: {', '.join(missing)}")
        if fails:
            raise TaskError(f"stock service unavailable (simulated, attempt {ctx.attempt})")
        return {"reserved": len(ctx.order.get("items", []))}

    return reserve


def _refund(chaos: Chaos) -> Handler:
    def refund(ctx: TaskContext) -> dict:
        """Give the charge back: slowed down and failed by the chaos knobs like any step."""
        delay, fails, _ = chaos.draw()
        if delay and not ctx.sleep(delay):
            raise TaskError("worker stopped")
        if fails:
            raise TaskError(f"refund declined (simulated, attempt {ctx.attempt})")
        charge = (ctx.results.get("payment") or {}).get("charge_id")
        # Derived from the idempotency key: a retried refund gives the same id.
        refund_id = "rf_" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:12]
        return {"refund_id": refund_id, "charge_id": charge}

    return refund


def _reconcile(chaos: Chaos) -> Handler:
    def reconcile(ctx: TaskContext) -> dict:
        """Compare the gateway's charges with ours: slowed and failed like any step."""
        delay, fails, _ = chaos.draw()
        if delay and not ctx.sleep(delay):
            raise TaskError("worker stopped")
        if fails:
            raise TaskError(f"gateway report unavailable (simulated, attempt {ctx.attempt})")
        return {"reconciled": ctx.order_id}

    return reconcile


def chaos_app(version: str | None = None) -> App:
    app = demo_app(version=version, payment={"max_in_flight": PAYMENT_LIMIT})
    step = app.steps["payment"]
    app.steps["payment"] = dataclasses.replace(step, handler=_behind_a_gateway(step.handler),
                                               compensate="refund")
    app.add_step("refund", _refund(app.chaos))
    app.add_step("reserve", _reserve(app.chaos))
    app.add_workflow(SAGA)
    app.add_step("review", _review(app.chaos), delay=REVIEW_DELAY)
    app.wait("payment_confirmed", timeout=CONFIRM_TIMEOUT, on_timeout="continue")
    app.add_workflow(WAITS)
    app.add_step("reconcile", _reconcile(app.chaos))
    app.add_workflow(RECONCILE)
    app.schedule("reconcile", cron=RECONCILE_CRON, workflow=RECONCILE.name)
    return app


app = chaos_app()
app_v2 = chaos_app(version="chaos-2")
