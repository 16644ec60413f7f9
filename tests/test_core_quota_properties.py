"""Property test of a promise: a step's max_in_flight holds for the handlers that may really
be running, whatever happens to the workers and the server.

The test keeps its own model of the worker processes and of the handlers each one runs (the
truth the scheduler cannot see), and drives the pure core with random stimuli: orders, starts,
handlers ending, processes that stall (SIGSTOP) and come back, lose their connection, crash,
join, and server restarts through `restore()`, with a fake clock. After every stimulus the
handlers of the limited step that may be running (those of stalled processes included) are
never more than its limit.

The processes keep the remote worker's contract (scheduler/remote/session.py): one that learns
its worker id is dead (its heartbeat is refused, or it registers again and is not resumed)
reports what it still runs, cancels it, and joins again only once those handlers have ended;
one that cannot stop them within CANCEL_GRACE exits. A pause ends within MAX_STALL: a process
paused longer than its attempt's time limit plus the grace may run a handler the server has
written off (README, "Per-step limits").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import ORDER

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy, StepPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.model import Dispatch, Effects
from scheduler.engine.records import ResumePoint

LIMIT = 2
STEP_TIMEOUT = 3.0
GRACE = 2.0  # zombie_grace: the server's side of the contract
CANCEL_GRACE = 1.0  # the worker's: a cancelled handler ends within this, or the process exits
HEARTBEAT_TIMEOUT = 2.0
# Longest pause: it must end before the server gives up on the paused handlers (a death comes
# at least HEARTBEAT_TIMEOUT after the pause began, their bound GRACE after that).
MAX_STALL = HEARTBEAT_TIMEOUT + GRACE - CANCEL_GRACE
OFFSET = 1_700_000_000.0


def config() -> ClusterConfig:
    return ClusterConfig(
        workers=0, slots=2, prefetch=0, seed=3, step_timeout=STEP_TIMEOUT,
        heartbeat_interval=0.5, heartbeat_timeout=HEARTBEAT_TIMEOUT, zombie_grace=GRACE,
        retry=RetryPolicy(max_retries=5, backoff_base=0.1, backoff_cap=0.4),
        max_reassignments=50, steps={"payment": StepPolicy(max_in_flight=LIMIT)},
    )


@dataclass
class Handler:
    worker_id: str  # the id it runs under
    task_id: str
    lease: int

    @property
    def step(self) -> str:
        return self.task_id.rpartition(":")[2]


@dataclass
class Process:
    """One `orderflow worker` process, as the test knows it."""

    name: str
    ids: list[str] = field(default_factory=list)  # every worker id it held, current last
    handlers: list[Handler] = field(default_factory=list)
    stalled_at: float | None = None
    told_dead_at: float | None = None  # it knows its id is dead: cancelling, then rejoining
    gone: bool = False

    @property
    def current(self) -> str | None:
        return self.ids[-1] if self.ids else None


class World:
    def __init__(self) -> None:
        self.core = SchedulerCore(config(), epoch_offset=OFFSET)
        self.now = 0.0
        self.queues: dict[str, deque[Dispatch]] = {}
        self.processes: list[Process] = []
        self.orders = 0
        self.numbers = 0
        self.peak = 0

    # ---------------------------------------------------------------- helpers

    def apply(self, fx: Effects) -> None:
        for d in fx.dispatches:
            self.queues.setdefault(d.worker_id, deque()).append(d)
        self.core.validate()

    def alive_on_server(self, worker_id: str | None) -> bool:
        worker = views.workers(self.core).get(worker_id) if worker_id else None
        return worker is not None and worker.status in ("alive", "draining")

    def live(self) -> list[Process]:
        return [p for p in self.processes if not p.gone and p.stalled_at is None]

    def possibly_running(self) -> int:
        return sum(1 for p in self.processes if not p.gone
                   for h in p.handlers if h.step == "payment")

    def check(self) -> None:
        running = self.possibly_running()
        self.peak = max(self.peak, running)
        assert running <= LIMIT, (
            f"{running} payments may be running at once (limit {LIMIT}) at {self.now}")

    def join(self, process: Process) -> None:
        self.numbers += 1
        worker_id = f"p-{self.numbers}"
        process.ids.append(worker_id)
        process.told_dead_at = None
        self.queues[worker_id] = deque()
        self.apply(self.core.add_worker(worker_id, now=self.now, kind="process", slots=2))

    # ---------------------------------------------------------------- stimuli

    def add(self) -> None:
        process = Process(f"proc-{len(self.processes) + 1}")
        self.processes.append(process)
        self.join(process)

    def submit(self) -> None:
        self.orders += 1
        self.apply(self.core.submit(f"o{self.orders}", dict(ORDER), now=self.now))

    def start(self, pick: int) -> None:
        live = [p for p in self.live() if self.alive_on_server(p.current)
                and p.told_dead_at is None and len(p.handlers) < 2]
        if not live:
            return
        process = live[pick % len(live)]
        queue = self.queues.get(process.current, deque())
        while queue:
            d = queue.popleft()
            fx, context = self.core.start_task(d.task_id, d.worker_id, d.lease, now=self.now)
            self.apply(fx)
            if context is not None:
                process.handlers.append(Handler(d.worker_id, d.task_id, d.lease))
                return

    def finish(self, pick: int, ok: bool) -> None:
        """A handler of a running process returns and its process reports it (a result for
        an id this server never gave out is refused before the scheduler, as the hub does)."""
        ending = [(p, h) for p in self.live() for h in p.handlers]
        if not ending:
            return
        process, handler = ending[pick % len(ending)]
        process.handlers.remove(handler)
        if handler.worker_id not in views.workers(self.core):
            return
        if ok:
            fx = self.core.task_succeeded(handler.task_id, handler.worker_id, handler.lease,
                                          {"ok": True}, now=self.now)
        else:
            fx = self.core.task_failed(handler.task_id, handler.worker_id, handler.lease,
                                       "declined", now=self.now)
        self.apply(fx)

    def stall(self, pick: int) -> None:
        live = self.live()
        if live:
            live[pick % len(live)].stalled_at = self.now

    def resume(self, pick: int) -> None:
        stalled = [p for p in self.processes if not p.gone and p.stalled_at is not None]
        if stalled:
            stalled[pick % len(stalled)].stalled_at = None

    def lose(self, pick: int) -> None:
        """A connection drops and the process does not come back within the hub's grace: the
        server declares its id dead at once (the process itself runs on)."""
        live = [p for p in self.live() if self.alive_on_server(p.current)]
        if live:
            self.apply(self.core.worker_lost(live[pick % len(live)].current, now=self.now,
                                             reason="its connection closed"))

    def crash(self, pick: int) -> None:
        running = [p for p in self.processes if not p.gone]
        if running:
            process = running[pick % len(running)]
            process.gone, process.handlers = True, []

    def restart(self) -> None:
        """SIGKILL of the server and a new one on its journal (every event kept)."""
        old = self.core
        point = ResumePoint(**views.totals(old))
        records = [old.order_record(o, with_events=True) for o in views.orders(old).values()]
        self.core = SchedulerCore(config(), epoch_offset=OFFSET)
        self.queues = {}
        self.apply(self.core.restore(point, records, now=self.now))

    def tick(self, steps: int) -> None:
        """Time passes in heartbeat-sized steps; each running process heartbeats, keeps its
        side of the contract, and the monitor runs."""
        for _ in range(max(1, steps)):
            self.now += 0.25
            for process in self.processes:
                if process.gone:
                    continue
                if process.stalled_at is not None and self.now - process.stalled_at >= MAX_STALL:
                    process.stalled_at = None  # SIGCONT before the server gives up on it
                if process.stalled_at is None:
                    self.keep_contract(process)
            self.apply(self.core.tick(now=self.now))
            self.check()

    def keep_contract(self, process: Process) -> None:
        if self.alive_on_server(process.current) and process.told_dead_at is None:
            self.core.heartbeat(process.current, self.now)
            return
        if process.told_dead_at is None:
            # Its heartbeat was refused, or it registered again and was not resumed: it says
            # what it still runs, and cancels it.
            process.told_dead_at = self.now
            self.apply(self.core.workers_report(
                process.ids, [(h.worker_id, h.task_id, h.lease) for h in process.handlers],
                now=self.now))
        if not process.handlers:
            self.apply(self.core.workers_report(process.ids, [], now=self.now))
            self.join(process)
        elif self.now >= process.told_dead_at + CANCEL_GRACE:
            process.gone, process.handlers = True, []  # a handler ignored it: exit


STIMULI = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 0)),
        st.tuples(st.just("start"), st.integers(0, 7)),
        st.tuples(st.just("start"), st.integers(0, 7)),
        st.tuples(st.just("succeed"), st.integers(0, 7)),
        st.tuples(st.just("fail"), st.integers(0, 7)),
        st.tuples(st.just("stall"), st.integers(0, 7)),
        st.tuples(st.just("resume"), st.integers(0, 7)),
        st.tuples(st.just("lose"), st.integers(0, 7)),
        st.tuples(st.just("crash"), st.integers(0, 7)),
        st.tuples(st.just("add"), st.integers(0, 0)),
        st.tuples(st.just("restart"), st.integers(0, 0)),
        st.tuples(st.just("tick"), st.integers(1, 12)),
    ),
    max_size=80,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stimuli=STIMULI, orders=st.integers(2, 8), processes=st.integers(1, 3))
def test_no_more_handlers_of_a_limited_step_may_run_at_once_than_its_limit(
        stimuli, orders, processes):
    world = World()
    for _ in range(processes):
        world.add()
    for _ in range(orders):
        world.submit()
    for name, arg in stimuli:
        if name == "submit":
            world.submit()
        elif name == "start":
            world.start(arg)
        elif name in ("succeed", "fail"):
            world.finish(arg, ok=name == "succeed")
        elif name == "add":
            world.add()
        elif name == "restart":
            world.restart()
        elif name == "tick":
            world.tick(arg)
        else:
            getattr(world, name)(arg)
        world.check()
    # Everything settles: the stalls end, handlers return, and every order finishes.
    world.add()
    for _ in range(400):
        for process in world.processes:
            process.stalled_at = None
        for pick in range(2 * len(world.processes)):
            world.start(pick)
        for _ in range(sum(len(p.handlers) for p in world.processes)):
            world.finish(0, ok=True)
        world.tick(2)
        if views.active_orders(world.core) == 0:
            break
    assert views.active_orders(world.core) == 0, "an order was left waiting"
    assert world.peak <= LIMIT
