"""The app a chaos run's servers schedule: the built-in demo with a concurrency limit on its
payment step (a payment gateway's quota), so that the run checks the limit holds through
worker stalls, deaths and server restarts (invariants.py). Workers run the demo's handlers.

    orderflow serve --app scheduler.chaos.app:app
"""

from __future__ import annotations

from ..demo.app import demo_app

# Low enough that a run's load reaches it: its remote and thread workers have more slots.
PAYMENT_LIMIT = 4

app = demo_app(payment={"max_in_flight": PAYMENT_LIMIT})
