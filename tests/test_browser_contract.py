"""The browser's event handling against the server's: the page knows only event types the
core emits, and its order book, fed nothing but the engine's events, shows every step in the
state the engine holds it in (fan-out workflows included)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sim import Sim
from web import fast_cluster

from dashboard.stream.push import build_snapshot
from scheduler.chaos.app import SAGA
from scheduler.engine import views
from scheduler.engine.config import RetryPolicy
from scheduler.engine.events import EVENT_TYPES
from scheduler.engine.states import TERMINAL_ORDER, derive_order_stage
from scheduler.engine.workflow import DEFAULT_WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent
STATES_JS = ROOT / "static" / "js" / "states.js"
REPLAY_JS = ROOT / "tests" / "js" / "replay.js"
# What a user sees: the page shows ready and assigned alike, as "queued".
SHOWN = {"ready": "queued", "assigned": "queued"}


def browser_event_types() -> list[str]:
    """The list exported as EVENT_TYPES by static/js/states.js."""
    source = STATES_JS.read_text(encoding="utf-8")
    match = re.search(r"export const EVENT_TYPES = Object\.freeze\(\[(.*?)\]\);", source, re.S)
    assert match, "static/js/states.js no longer exports EVENT_TYPES as a frozen list"
    return re.findall(r"'([a-z_]+)'", match.group(1))


def test_the_browser_knows_only_event_types_the_server_emits():
    known = browser_event_types()
    assert len(known) >= 10 and len(set(known)) == len(known)
    assert set(known) <= EVENT_TYPES, f"never emitted: {sorted(set(known) - EVENT_TYPES)}"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed for the browser contract tests")
        pytest.skip("node is not installed")
    return found


def engine_run(seed: int) -> tuple[list[list[dict]], list[dict]]:
    """A seeded random run of the pure core: orders of both workflows, successes, failures
    with retries and give-ups, a stale report, a dead worker, manual retries and cancels.
    Returns the events of each stimulus and, after each, what the engine holds."""
    rng = random.Random(seed)
    # One retry per step, so orders also fail for good (and get retried by hand).
    sim = Sim(workers=3, seed=seed, workflows={SAGA.name: SAGA},
              retry=RetryPolicy(max_retries=1, backoff_base=0.05, backoff_cap=0.2))
    live, running = ["w1", "w2", "w3"], {}
    checkpoints: list[list[dict]] = []
    truths: list[dict] = []
    seen = 0

    def checkpoint() -> None:
        nonlocal seen
        checkpoints.append(sim.events[seen:])
        seen = len(sim.events)
        truths.append(truth_of(sim))

    def submit() -> None:
        workflow = rng.choice(["ecommerce", "ecommerce_invoiced", "ecommerce_invoiced",
                               SAGA.name])
        sim.submit(f"o-{views.order_number(sim.core) + 1}", workflow)

    for _ in range(4):
        submit()
    checkpoint()
    for _ in range(400):
        roll = rng.random()
        idle = [w for w in live if w not in running]
        if roll < 0.45 and idle:
            wid = rng.choice(idle)
            dispatch, _ = sim.start_next(wid)
            if dispatch is not None:
                running[wid] = dispatch
        elif roll < 0.8 and running:
            wid = rng.choice(sorted(running))
            dispatch = running.pop(wid)
            if rng.random() < 0.3:
                sim.fail(dispatch, error="chaos")
            else:
                sim.succeed(dispatch)
        elif roll < 0.86:
            sim.advance(rng.choice([0.05, 0.3, 1.0]))  # retries fall due (no event says so)
        elif roll < 0.88 and len(live) > 1:
            victim = rng.choice(live)
            live.remove(victim)
            sim.advance(sim.core.config.heartbeat_timeout + 0.5, beating=tuple(live))
            new = f"w{len(sim.queues) + 1}"
            sim.add_worker(new)
            live.append(new)
            # Its running task, if any, reports late: the result is rejected by its lease.
        elif roll < 0.93:
            failed = [o.id for o in views.orders(sim.core).values()
                      if sim.core.order_status(o).value in ("failed", "compensation_failed")]
            if failed:
                sim.apply(sim.core.retry_order(rng.choice(failed), now=sim.now))
        elif roll < 0.95:
            active = [o.id for o in views.orders(sim.core).values()
                      if sim.core.order_status(o) not in TERMINAL_ORDER
                      and not o.undoing]  # undos run to the end: not cancellable
            if active:
                sim.apply(sim.core.cancel_order(rng.choice(active), now=sim.now))
        else:
            submit()
        checkpoint()
    return checkpoints, truths


def shown(status: str) -> str:
    return SHOWN.get(status, status)


@pytest.mark.slow  # node, a process of its own
@pytest.mark.parametrize("seed", range(6))
def test_the_order_book_shows_the_engines_states_from_its_events_alone(seed):
    checkpoints, truths = engine_run(seed)
    types = {e["type"] for batch in checkpoints for e in batch}
    stages = {o["stage"] for truth in truths for o in truth.values()}
    assert stages >= {"queued", "running", "retrying", "completed", "failed", "cancelled"}
    # The run covers fan-out, failures, retries, moves, cancels and late results (and, in
    # most seeds, sagas: the test below follows one through every turn).
    assert {"task_retrying", "task_reassigned", "task_cancelled", "order_failed",
            "order_retried", "result_rejected"} <= types
    assert any(e.get("workflow") == "ecommerce_invoiced" for batch in checkpoints for e in batch)
    assert_replay_matches(checkpoints, truths)


@pytest.mark.slow  # node, a process of its own
def test_the_order_book_follows_a_saga_through_every_turn_from_its_events_alone():
    sim = Sim(workers=1, slots=1, workflows={SAGA.name: SAGA}, retry=RetryPolicy(max_retries=0))
    checkpoints, truths = [], []
    seen = 0

    def checkpoint() -> None:
        nonlocal seen
        checkpoints.append(sim.events[seen:])
        seen = len(sim.events)
        truths.append(truth_of(sim))

    def run(step: str, ok: bool = True) -> None:
        d, ctx = sim.start_next("w1")
        assert ctx["step"] == step
        checkpoint()
        (sim.succeed(d, step) if ok else sim.fail(d, "no"))
        checkpoint()

    sim.submit("o-1", SAGA.name)
    checkpoint()
    run("payment")
    run("reserve", ok=False)  # refund ready
    run("refund", ok=False)  # compensation_failed
    sim.apply(sim.core.retry_order("o-1", now=sim.now))  # only the refund runs again
    checkpoint()
    run("refund")  # compensated
    sim.submit("o-2", SAGA.name)
    checkpoint()
    run("payment")
    sim.apply(sim.core.cancel_order("o-2", now=sim.now))
    checkpoint()
    run("refund")
    statuses = [t[o]["status"] for t in truths for o in t]
    assert {"compensating", "compensation_failed", "compensated"} <= set(statuses)
    assert_replay_matches(checkpoints, truths)


def truth_of(sim: Sim) -> dict:
    """What the engine holds of each order: status, stage and its tasks' states."""
    return {
        order.id: {
            "status": sim.core.order_status(order).value,
            "stage": derive_order_stage((t.state for t in order.tasks.values()),
                                        sim.core.order_status(order)).value,
            "tasks": {step: task.state.value for step, task in order.tasks.items()},
        }
        for order in views.orders(sim.core).values()
    }


def assert_replay_matches(checkpoints: list[list[dict]], truths: list[dict]) -> None:
    """The page's order book, fed the events of each checkpoint, holds what the engine held
    after it."""
    workflows = build_snapshot(fast_cluster(workflows={**DEFAULT_WORKFLOWS, SAGA.name: SAGA})
                               )["workflows"]
    replay = subprocess.run(
        [node(), str(REPLAY_JS)], input=json.dumps({"workflows": workflows,
                                                    "checkpoints": checkpoints}),
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    replayed = json.loads(replay.stdout)
    assert len(replayed) == len(truths)
    for at, (view, truth) in enumerate(zip(replayed, truths, strict=True)):
        assert set(view) == set(truth), f"after stimulus {at}: orders differ"
        for order_id, held in truth.items():
            page = view[order_id]
            where = f"after stimulus {at} ({[e['type'] for e in checkpoints[at]]}), {order_id}"
            # Terminal and compensating orders are named by an event; before that, a page
            # cannot tell pending from in progress.
            named = held["status"] in {s.value for s in TERMINAL_ORDER} | {"compensating"}
            assert (page["status"] == held["status"]) if named else (
                page["status"] in ("pending", "in_progress")), f"{where}: {page} vs {held}"
            lagging = False
            for step, state in held["tasks"].items():
                seen = page["tasks"][step]
                # A retry falls due without an event: the page says "retry" until it starts.
                lag = seen == "retry_wait" and shown(state) == "queued"
                lagging |= lag
                assert shown(seen) == shown(state) or lag, f"{where} {step}: {page} vs {held}"
            # The stage, by the page's own copy of the rule (and the same lag).
            assert page["stage"] == held["stage"] or (
                lagging and page["stage"] == "retrying" and held["stage"] == "queued"), (
                f"{where}: stage {page['stage']} vs {held['stage']}")
