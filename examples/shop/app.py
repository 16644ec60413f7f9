"""A shop's own steps: payment, packing and shipping call real HTTP services (the example's
gateway, `examples/shop/gateway.py`), each with a timeout and the step's idempotency key, so
a charge that ran twice (a retry, a worker that died mid-call, a restart) is charged once.

    orderflow serve  --app examples.shop.app:app
    orderflow worker --app examples.shop.app:app --tags payments --server http://127.0.0.1:5000

The gateway's address comes from SHOP_GATEWAY (default http://127.0.0.1:8700).
"""

from __future__ import annotations

import os

import requests

from scheduler import App, TaskContext, TaskError

GATEWAY = os.environ.get("SHOP_GATEWAY", "http://127.0.0.1:8700")
# Seconds to wait for the gateway: well under the step's time limit, so a hung connection is
# a failed attempt that is retried, not a step that times out.
HTTP_TIMEOUT = 4.0

app = App("shop")


def _post(ctx: TaskContext, path: str, body: dict) -> dict:
    """POST with the step's idempotency key: the same across retries and moves, so the
    gateway answers a repeat with the first result instead of doing it again."""
    try:
        response = requests.post(
            f"{GATEWAY}{path}", json=body, timeout=HTTP_TIMEOUT,
            headers={"Idempotency-Key": ctx.idempotency_key},
        )
    except requests.RequestException as exc:
        raise TaskError(f"{path} unreachable: {type(exc).__name__}") from None
    if response.status_code in (200, 201):
        return response.json()
    # 409: the same key is still in progress elsewhere (a worker that was declared dead);
    # 5xx: the service is unwell. Both are worth another attempt after a backoff.
    raise TaskError(f"{path} answered {response.status_code}: {response.text[:200]}")


@app.step(retries=6, backoff=(0.2, 3.0), timeout=10, max_in_flight=20, tags={"payments"})
def payment(ctx: TaskContext) -> dict:
    """Charge the order's total at the payment gateway."""
    total = round(sum(i["qty"] * i["price"] for i in ctx.order["items"]), 2)
    charge = _post(ctx, "/charges", {"order_id": ctx.order_id, "amount": total})
    return {"charge_id": charge["id"], "amount": total}


@app.step(retries=4, backoff=(0.1, 2.0), timeout=10)
def packing(ctx: TaskContext) -> dict:
    """Ask the warehouse to pack the items."""
    parcel = _post(ctx, "/parcels", {"order_id": ctx.order_id, "items": ctx.order["items"]})
    return {"parcel_id": parcel["id"]}


@app.step(retries=4, backoff=(0.1, 2.0), timeout=10)
def shipping(ctx: TaskContext) -> dict:
    """Book the carrier for the parcel."""
    shipment = _post(ctx, "/shipments", {"order_id": ctx.order_id,
                                         "parcel_id": ctx.results["packing"]["parcel_id"]})
    return {"tracking": shipment["id"]}


app.workflow("checkout", ["payment", "packing", "shipping"])
