"""Handlers that `orderflow worker` processes load in the remote-worker tests and the
failover benchmark (`--handlers remote_handlers:SLOW_PAYMENT`, with tests/ on PYTHONPATH)."""

from __future__ import annotations

from scheduler.steps.context import TaskContext

# Long enough for a test to act (SIGSTOP, SIGTERM, SIGKILL) while a payment runs.
PAYMENT_SECONDS = 1.2


def quick(ctx: TaskContext) -> dict:
    return {"step": ctx.step, "worker": ctx.worker_id}


def slow(ctx: TaskContext) -> dict:
    ctx.sleep(PAYMENT_SECONDS)
    return {"step": ctx.step, "worker": ctx.worker_id}


SLOW_PAYMENT = {"payment": slow, "packing": quick, "shipping": quick}
NOT_A_DICT = [slow]


def huge(ctx: TaskContext) -> str:
    return "x" * 2_000_000  # over the server's 1 MiB message limit


HUGE_PAYMENT = {"payment": huge, "packing": quick, "shipping": quick}
