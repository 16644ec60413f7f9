"""A shop's own steps: they call real HTTP services (the example's gateway,
`examples/shop/gateway.py`), each with a timeout and the step's idempotency key, so a charge
that ran twice (a retry, a worker that died mid-call, a restart) is charged once.

Two workflows: `checkout` (payment, packing, shipping: the five-minute version) and
`order_life`, an order's whole life: reserve the stock, wait for the payment to be confirmed
(30 minutes, then the order is cancelled and its stock released), charge, pack (an item
missing from the shelf fails it for good: the charge is refunded, the stock released), ship,
wait for the carrier's "delivered", and ask for a review a week later.

    orderflow serve  --app examples.shop.app:app
    orderflow worker --app examples.shop.app:app --tags payments --server http://127.0.0.1:5000

The gateway's address comes from SHOP_GATEWAY (default http://127.0.0.1:8700); the payment's
window from SHOP_CONFIRM_WINDOW (default 30m) and the review's delay from SHOP_REVIEW_DELAY
(default 7d), which a test sets to seconds (server and workers must agree on them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import requests

from scheduler import App, TaskContext, TaskError

GATEWAY = os.environ.get("SHOP_GATEWAY", "http://127.0.0.1:8700")
# How long an order waits for its payment to be confirmed (3-D Secure, a bank transfer)
# before it is cancelled, and how long after delivery the review request goes out.
CONFIRM_WINDOW = os.environ.get("SHOP_CONFIRM_WINDOW", "30m")
REVIEW_DELAY = os.environ.get("SHOP_REVIEW_DELAY", "7d")
# Seconds to wait for the gateway: well under the step's time limit, so a hung connection is
# a failed attempt that is retried, not a step that times out.
HTTP_TIMEOUT = 4.0
# How long an attempt waits for an earlier attempt with its key to finish at the gateway
# (409: in progress) before it gives up as a failed attempt; within the step's time limit.
IN_PROGRESS_WAIT = 5.0
IN_PROGRESS_POLL = 0.25

app = App("shop")


def _post(ctx: TaskContext, path: str, body: dict,
          clock: Callable[[], float] = time.monotonic) -> dict:
    """POST with the step's idempotency key: the same across retries and moves, so the
    gateway answers a repeat with the first result instead of doing it again.

    A 409 means an earlier attempt with this key is still running there (its worker was
    declared dead, or the server restarted, mid-call): this attempt waits for it and then
    gets its answer, rather than spending its retries while the first call is still going."""
    deadline = clock() + IN_PROGRESS_WAIT
    while True:
        response = _send(ctx, path, body)
        if response.status_code in (200, 201):
            return response.json()
        if response.status_code == 409 and clock() < deadline:
            if not ctx.sleep(IN_PROGRESS_POLL):
                raise TaskError(f"{path}: cancelled while an earlier call was in progress")
            continue
        # 5xx: the service is unwell; 409 for too long. Another attempt after a backoff.
        raise TaskError(f"{path} answered {response.status_code}: {response.text[:200]}")


def _send(ctx: TaskContext, path: str, body: dict) -> requests.Response:
    try:
        return requests.post(
            f"{GATEWAY}{path}", json=body, timeout=HTTP_TIMEOUT,
            headers={"Idempotency-Key": ctx.idempotency_key},
        )
    except requests.RequestException as exc:
        raise TaskError(f"{path} unreachable: {type(exc).__name__}") from None


# The undos first: a step's `compensate=` names a step declared already.
@app.step(retries=10, backoff=(0.2, 3.0), timeout=10)
def release(ctx: TaskContext) -> dict:
    """Undo `reserve`: put the order's stock back on sale."""
    reservation = ctx.results["reserve"]["reservation_id"]
    done = _post(ctx, "/releases", {"order_id": ctx.order_id, "reservation_id": reservation})
    return {"release_id": done["id"]}


@app.step(retries=10, backoff=(0.2, 3.0), timeout=10, tags={"payments"})
def refund(ctx: TaskContext) -> dict:
    """Undo `payment`: refund the charge (its key, `<order>:payment:compensate`, makes a
    refund sent twice one refund)."""
    charge = ctx.results["payment"]
    done = _post(ctx, "/refunds", {"order_id": ctx.order_id, "charge_id": charge["charge_id"],
                                   "amount": charge["amount"]})
    return {"refund_id": done["id"]}


@app.step(retries=5, backoff=(0.2, 3.0), timeout=10, compensate="release")
def reserve(ctx: TaskContext) -> dict:
    """Hold the items in the warehouse while the customer pays."""
    held = _post(ctx, "/reservations", {"order_id": ctx.order_id, "items": ctx.order["items"]})
    return {"reservation_id": held["id"]}


# No handler: completed by POST /api/orders/<id>/signals/payment_confirmed (the payment
# provider's webhook); without it in time the order is cancelled and its stock released.
app.wait("payment_confirmed", timeout=CONFIRM_WINDOW, on_timeout="cancel")


@app.step(retries=6, backoff=(0.2, 3.0), timeout=10, max_in_flight=20, tags={"payments"},
          compensate="refund")
def payment(ctx: TaskContext) -> dict:
    """Charge the order's total at the payment gateway."""
    total = round(sum(i["qty"] * i["price"] for i in ctx.order["items"]), 2)
    charge = _post(ctx, "/charges", {"order_id": ctx.order_id, "amount": total})
    return {"charge_id": charge["id"], "amount": total}


@app.step(retries=5, backoff=(0.2, 1.0), timeout=10)
def packing(ctx: TaskContext) -> dict:
    """Ask the warehouse to pack the items. An item missing from the shelf is refused at
    every attempt (422), so the step fails for good and the order's undos run."""
    parcel = _post(ctx, "/parcels", {"order_id": ctx.order_id, "items": ctx.order["items"]})
    return {"parcel_id": parcel["id"]}


@app.step(retries=5, backoff=(0.2, 3.0), timeout=10)
def shipping(ctx: TaskContext) -> dict:
    """Book the carrier for the parcel."""
    shipment = _post(ctx, "/shipments", {"order_id": ctx.order_id,
                                         "parcel_id": ctx.results["packing"]["parcel_id"]})
    return {"tracking": shipment["id"]}


# No handler either: the carrier's webhook says the parcel arrived. No timeout: a parcel
# lost for good is support's case, who sends the signal by hand from the order view.
app.wait("delivered")


@app.step(retries=5, backoff=(0.2, 3.0), timeout=10, delay=REVIEW_DELAY)
def review_request(ctx: TaskContext) -> dict:
    """A week after delivery, ask the customer for a review (once: the key)."""
    review = _post(ctx, "/reviews", {"order_id": ctx.order_id,
                                     "customer": ctx.order["customer"]})
    return {"review_id": review["id"]}


@app.step(retries=5, backoff=(1.0, 30.0), timeout=60, tags={"payments"})
def reconcile(ctx: TaskContext) -> dict:
    """Nightly: what the gateway charged and refunded, net, for the books; a refund of a
    charge the gateway does not hold is named (it refuses those, so none is expected)."""
    try:
        response = requests.get(f"{GATEWAY}/ledger", timeout=HTTP_TIMEOUT * 5)
    except requests.RequestException as exc:
        raise TaskError(f"/ledger unreachable: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise TaskError(f"/ledger answered {response.status_code}")
    return summarise(response.json())


def summarise(ledger: dict) -> dict:
    """The ledger's charges and refunds in totals, and the refunds that match no charge."""
    charges = {c["id"]: c["request"]["amount"] for c in ledger["charges"].values()}
    refunds = [r["request"] for r in ledger["refunds"].values()]
    charged = round(sum(charges.values()), 2)
    refunded = round(sum(r["amount"] for r in refunds), 2)
    return {"charges": len(charges), "refunds": len(refunds), "charged": charged,
            "refunded": refunded, "net": round(charged - refunded, 2),
            "unmatched_refunds": sorted(r["charge_id"] for r in refunds
                                        if r["charge_id"] not in charges)}


app.workflow("checkout", ["payment", "packing", "shipping"])
app.workflow("order_life", ["reserve", "payment_confirmed", "payment", "packing", "shipping",
                            "delivered", "review_request"])
app.workflow("nightly", ["reconcile"])
# At 03:00 in the shop's zone, once (a missed night runs once at the next start).
app.schedule("reconcile", cron="0 3 * * *", workflow="nightly", tz="Europe/Berlin",
             data={"customer": "finance", "items": [{"sku": "reconcile", "qty": 1,
                                                     "price": 0}]})
