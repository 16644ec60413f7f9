"""The app a chaos run's servers schedule and its remote workers run: the built-in demo
with a payment gateway's quota on its payment step (a concurrency limit, held to by the
checker, invariants.py) and a gateway that takes a moment, so that stalls, deaths and
restarts catch payments in flight. Workers the server starts run the plain demo handlers.

    orderflow serve --app scheduler.chaos.app:app
    orderflow worker --app scheduler.chaos.app:app
"""

from __future__ import annotations

import dataclasses
import random
import threading

from ..demo.app import demo_app
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


def chaos_app() -> App:
    app = demo_app(payment={"max_in_flight": PAYMENT_LIMIT})
    step = app.steps["payment"]
    app.steps["payment"] = dataclasses.replace(step, handler=_behind_a_gateway(step.handler))
    return app


app = chaos_app()
