"""Handlers that `orderflow worker` processes load in the remote-worker tests and the
failover benchmark (`--handlers remote_handlers:SLOW_PAYMENT`, with tests/ on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import time

from scheduler.steps.context import TaskContext, TaskError

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


# Async handlers: an `async def` payment waits without a thread, mixed with plain steps.
ASYNC_SECONDS = 0.4


async def async_wait(ctx: TaskContext) -> dict:
    await ctx.asleep(ASYNC_SECONDS)
    return {"step": ctx.step, "worker": ctx.worker_id, "async": True}


async def async_quick(ctx: TaskContext) -> dict:
    return {"step": ctx.step, "worker": ctx.worker_id, "async": True}


ASYNC_PAYMENT = {"payment": async_wait, "packing": quick, "shipping": quick}
ALL_ASYNC = {"payment": async_wait, "packing": async_quick, "shipping": async_quick}


# Hung handlers: the first attempt of a payment never returns unless cancelled (as a call
# to a gateway that hangs); later attempts succeed at once.
HANG_SECONDS = 60.0


def hangs_once(ctx: TaskContext) -> dict:
    if ctx.attempt == 1:
        ctx.cancelled.wait(HANG_SECONDS)
        raise TaskError("gave up: cancelled")
    return quick(ctx)


async def hangs_once_async(ctx: TaskContext) -> dict:
    if ctx.attempt == 1:
        await asyncio.sleep(HANG_SECONDS)  # cancelled outright
    return quick(ctx)


def ignores_cancellation(ctx: TaskContext) -> dict:
    time.sleep(HANG_SECONDS)  # deaf to ctx.cancelled: its slot stays stuck
    return quick(ctx)


HANG_ONCE = {"payment": hangs_once, "packing": quick, "shipping": quick}
HANG_ONCE_ASYNC = {"payment": hangs_once_async, "packing": quick, "shipping": quick}
STUCK_PAYMENT = {"payment": ignores_cancellation, "packing": quick, "shipping": quick}


# A payment that takes a few seconds unless cancelled first (then it stops and says so): a
# gateway call that honours its cancellation.
STOPPABLE_SECONDS = 4.0


def stops_when_cancelled(ctx: TaskContext) -> dict:
    if not ctx.sleep(STOPPABLE_SECONDS):
        raise TaskError("stopped: cancelled")
    return quick(ctx)


STOPPABLE_PAYMENT = {"payment": stops_when_cancelled, "packing": quick, "shipping": quick}


# A handler bug: the payment raises (an exception, not a TaskError) from a helper.
def _parse_charge(answer: dict) -> str:
    return answer["charge_id"]


def crashes(ctx: TaskContext) -> dict:
    return {"charge": _parse_charge({})}


CRASHING_PAYMENT = {"payment": crashes, "packing": quick, "shipping": quick}
