"""The demo steps (payment, packing, invoice, shipping) and the chaos knobs that make them
slow or failing on purpose, so the dashboard has retries and failures to show."""

from __future__ import annotations

import hashlib
import random
import threading

from ..engine.config import ConfigError
from ..engine.fields import Field, Kind, Message
from ..engine.orders import order_total
from ..steps.context import Handler, TaskContext, TaskError

MAX_LATENCY_MS = 60_000


def _rate(name: str, description: str) -> Field:
    return Field(name, Kind.NUMBER, minimum=0, maximum=1, description=description)


# The chaos knobs a client may change (PUT /api/chaos), declared once: Chaos checks changes
# with it and the API's description is written from it.
CHAOS_SETTINGS = Message(
    "Chaos",
    (
        _rate("failure_rate", "share of demo attempts that fail"),
        Field("latency_ms", Kind.LIST, min_items=2, max_items=2,
              of=Field("latency_ms", Kind.NUMBER, minimum=0, maximum=MAX_LATENCY_MS),
              description="the range each demo attempt's latency is drawn from, its two "
                          "ends in milliseconds (in either order: [100, 20] is [20, 100])"),
        _rate("hang_rate", "share of demo attempts that hang until their time limit "
                           "cancels them"),
        _rate("stuck_rate", "share of the server's demo attempts that ignore their "
                            "cancellation and return 3 s after their time limit (their "
                            "thread is abandoned and replaced)"),
    ),
    min_fields=1,
    error=ConfigError,
)


class Chaos:
    """Failure rate, latency, hang rate and stuck rate of the demo handlers, changeable while
    the cluster runs. A hung attempt waits until it is cancelled (its time limit), like a
    gateway call that never answers; a stuck one ignores the cancellation and returns
    STUCK_EXTRA seconds after its time limit, like a call without a timeout of its own. The
    stuck rate is the server's own: worker processes take the other knobs from the server,
    not this one (a process whose slots are all stuck exits, to be restarted)."""

    def __init__(
        self,
        failure_rate: float = 0.0,
        latency_ms: tuple[float, float] = (0.0, 0.0),
        seed: int | None = None,
        hang_rate: float = 0.0,
        stuck_rate: float = 0.0,
    ):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        # Set when the cluster stops: a simulated stuck attempt then returns at once (it is
        # there to exercise abandoned threads, not to outlive its server by a time limit).
        self._released = threading.Event()
        self.failure_rate = 0.0
        self.latency_ms = (0.0, 0.0)
        self.hang_rate = 0.0
        self.stuck_rate = 0.0
        self.update(failure_rate=failure_rate, latency_ms=latency_ms, hang_rate=hang_rate,
                    stuck_rate=stuck_rate)

    def update(
        self,
        failure_rate: float | None = None,
        latency_ms: tuple[float, float] | list[float] | None = None,
        hang_rate: float | None = None,
        stuck_rate: float | None = None,
    ) -> dict:
        """Change the knobs given (None: unchanged); see `apply`."""
        given = {"failure_rate": failure_rate, "latency_ms": latency_ms,
                 "hang_rate": hang_rate, "stuck_rate": stuck_rate}
        if isinstance(latency_ms, tuple):
            given["latency_ms"] = list(latency_ms)
        changes = {name: value for name, value in given.items() if value is not None}
        return self.apply(changes) if changes else self.view()

    def apply(self, changes: object) -> dict:
        """Change the knobs `changes` names (a CHAOS_SETTINGS message: one or more of them),
        checked once and all before any is applied, so a bad value changes nothing
        (ConfigError). Returns the view after."""
        clean = CHAOS_SETTINGS.read(changes)
        with self._lock:
            if "failure_rate" in clean:
                self.failure_rate = float(clean["failure_rate"])
            if "latency_ms" in clean:
                low, high = sorted(clean["latency_ms"])
                self.latency_ms = (float(low), float(high))
            if "hang_rate" in clean:
                self.hang_rate = float(clean["hang_rate"])
            if "stuck_rate" in clean:
                self.stuck_rate = float(clean["stuck_rate"])
        return self.view()

    def view(self) -> dict:
        return {"failure_rate": self.failure_rate, "latency_ms": list(self.latency_ms),
                "hang_rate": self.hang_rate, "stuck_rate": self.stuck_rate}

    def draw(self) -> tuple[float, bool, bool]:
        """(seconds to wait, whether this attempt fails, whether it hangs) for one call."""
        with self._lock:
            low, high = self.latency_ms
            delay = self._rng.uniform(low, high) / 1000.0 if high > 0 else 0.0
            fails = self.failure_rate > 0 and self._rng.random() < self.failure_rate
            hangs = self.hang_rate > 0 and self._rng.random() < self.hang_rate
        return delay, fails, hangs

    def release(self) -> None:
        """The cluster stops: simulated stuck attempts return now, and later ones at once."""
        self._released.set()

    def stay_stuck(self, seconds: float) -> None:
        """A stuck attempt's wait, deaf to its cancellation, until `release()` at most."""
        self._released.wait(seconds)

    def draw_stuck(self) -> bool:
        """Whether this attempt ignores its cancellation (drawn apart from `draw`, so a
        stuck rate of 0 leaves the other draws as they were)."""
        with self._lock:
            return self.stuck_rate > 0 and self._rng.random() < self.stuck_rate


# How long a hung attempt waits for its cancellation at most (its time limit comes first).
HANG_SECONDS = 3600.0
# How long past its time limit a stuck attempt, deaf to its cancellation, returns.
STUCK_EXTRA = 3.0


def _reference(prefix: str, key: str) -> str:
    """A reference derived from the idempotency key: a retried charge gets the same id."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:12]


def demo_handlers(chaos: Chaos) -> dict[str, Handler]:
    """Payment, packing, invoice and shipping that wait and fail as `chaos` says."""

    def simulate(ctx: TaskContext, failure: str) -> None:
        if chaos.draw_stuck():
            # Deaf to ctx.cancelled on purpose: its thread worker abandons the thread.
            chaos.stay_stuck((ctx.timeout or 0.0) + STUCK_EXTRA)
            raise TaskError("ignored its cancellation (simulated)")
        delay, fails, hangs = chaos.draw()
        if hangs and not ctx.sleep(HANG_SECONDS):
            raise TaskError("hung until cancelled (simulated)")
        if delay and not ctx.sleep(delay):
            raise TaskError("worker stopped")
        if fails:
            raise TaskError(f"{failure} (simulated, attempt {ctx.attempt})")

    def payment(ctx: TaskContext) -> dict:
        simulate(ctx, "payment gateway declined the charge")
        return {
            "charge_id": _reference("ch_", ctx.idempotency_key),
            "amount": order_total(ctx.order),
        }

    def packing(ctx: TaskContext) -> dict:
        simulate(ctx, "item out of stock at the packing station")
        return {
            "parcel_id": _reference("pk_", ctx.idempotency_key),
            "items": sum(i["qty"] for i in ctx.order.get("items", [])),
        }

    def invoice(ctx: TaskContext) -> dict:
        simulate(ctx, "invoice service unavailable")
        return {
            "invoice_id": _reference("in_", ctx.idempotency_key),
            "charge_id": (ctx.results.get("payment") or {}).get("charge_id"),
        }

    def shipping(ctx: TaskContext) -> dict:
        simulate(ctx, "carrier API timed out")
        return {"tracking": _reference("tr_", ctx.idempotency_key)}

    return {"payment": payment, "packing": packing, "invoice": invoice, "shipping": shipping}
