"""A shop's own steps: payment, packing and shipping call real HTTP services (the example's
gateway, `examples/shop/gateway.py`), each with a timeout and the step's idempotency key, so
a charge that ran twice (a retry, a worker that died mid-call, a restart) is charged once.

    orderflow serve  --app examples.shop.app:app
    orderflow worker --app examples.shop.app:app --tags payments --server http://127.0.0.1:5000

The gateway's address comes from SHOP_GATEWAY (default http://127.0.0.1:8700).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import requests

from scheduler import App, TaskContext, TaskError

GATEWAY = os.environ.get("SHOP_GATEWAY", "http://127.0.0.1:8700")
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


@app.step(retries=6, backoff=(0.2, 3.0), timeout=10, max_in_flight=20, tags={"payments"})
def payment(ctx: TaskContext) -> dict:
    """Charge the order's total at the payment gateway."""
    total = round(sum(i["qty"] * i["price"] for i in ctx.order["items"]), 2)
    charge = _post(ctx, "/charges", {"order_id": ctx.order_id, "amount": total})
    return {"charge_id": charge["id"], "amount": total}


@app.step(retries=5, backoff=(0.2, 3.0), timeout=10)
def packing(ctx: TaskContext) -> dict:
    """Ask the warehouse to pack the items."""
    parcel = _post(ctx, "/parcels", {"order_id": ctx.order_id, "items": ctx.order["items"]})
    return {"parcel_id": parcel["id"]}


@app.step(retries=5, backoff=(0.2, 3.0), timeout=10)
def shipping(ctx: TaskContext) -> dict:
    """Book the carrier for the parcel."""
    shipment = _post(ctx, "/shipments", {"order_id": ctx.order_id,
                                         "parcel_id": ctx.results["packing"]["parcel_id"]})
    return {"tracking": shipment["id"]}


app.workflow("checkout", ["payment", "packing", "shipping"])
