"""What the hub keeps per remote worker process (`Peer`) and per worker id (`RemoteExecutor`,
the cluster's handle on it), and the limits on how they join."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from scheduler.engine.model import Dispatch

from ..config import DefaultConfig

if TYPE_CHECKING:
    from scheduler import Cluster

# Per worker: results already handed to the cluster, so one sent again is not counted twice.
REPORTED_MEMORY = 4096


@dataclass(eq=False)
class Peer:
    """One worker process, across its reconnects (new sids) and re-registrations (new ids)."""

    session: str
    name: str
    host: str
    pid: int
    slots: int
    spawn_id: str | None
    steps: tuple[str, ...] | None = None  # the steps it has handlers for (None: any)
    tags: tuple[str, ...] = ()  # capabilities it offers
    # The workflow definitions its app has (None: any, a worker without an app).
    definitions: tuple[str, ...] | None = None
    sid: str | None = None
    current: str | None = None  # the worker id it works under now
    worker_ids: set[str] = field(default_factory=set)

    def meta(self) -> dict:
        return {"name": self.name, "host": self.host, "pid": self.pid}


@dataclass(frozen=True)
class JoinLimits:
    """How fast remote workers may join, and how many ids one process may hold (config.py)."""

    per_second: float = DefaultConfig.WORKER_JOINS_PER_SECOND
    burst: int = DefaultConfig.WORKER_JOIN_BURST
    ids_per_process: int = DefaultConfig.WORKER_IDS_PER_PROCESS


@dataclass
class _Slot:
    lease: int
    context: dict | None = None  # set once begun, so a repeated `begin` gets the same answer


class HubSide(Protocol):
    """What an executor asks of the hub that holds it (hub.py's `WorkerHub`): named here, so
    the hub imports this module and not the other way round."""

    cluster: Cluster  # the cluster of the current term

    def send_assign(self, executor: RemoteExecutor, tasks: list[list]) -> None: ...
    def send_cancel(self, executor: RemoteExecutor, dispatch: Dispatch) -> None: ...
    def retire(self, executor: RemoteExecutor, why: str) -> bool: ...
    def worker_left(self, executor: RemoteExecutor) -> None: ...
    def kill(self, executor: RemoteExecutor) -> None: ...


class RemoteExecutor:
    """The cluster's handle on one registration of a remote process (scheduler Executor).

    It remembers every assignment not yet reported, to send them again after a reconnect:
    one emitted while the connection was down is otherwise lost with it.
    """

    kind = "process"

    def __init__(self, worker_id: str, peer: Peer, hub: HubSide):
        self.id = worker_id
        self.peer = peer
        self._hub = hub
        # The cluster of the term it joined: after a change of leader, nothing it still
        # reports reaches the new term's scheduler.
        self._cluster = hub.cluster
        self._lock = threading.Lock()
        self._outstanding: dict[str, _Slot] = {}
        self._reported: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def slots(self) -> int:
        """Tasks the process runs at once (what it registered with)."""
        return self.peer.slots

    @property
    def steps(self) -> frozenset[str] | None:
        """The steps the process has handlers for, if it said (None: any)."""
        return None if self.peer.steps is None else frozenset(self.peer.steps)

    @property
    def tags(self) -> frozenset[str]:
        """Capabilities the process offers (`orderflow worker --tags`)."""
        return frozenset(self.peer.tags)

    @property
    def definitions(self) -> frozenset[str] | None:
        """The workflow definitions the process's app has, if it said (None: any)."""
        return None if self.peer.definitions is None else frozenset(self.peer.definitions)

    def start(self) -> None:
        """Nothing to start: the process is already running and connected."""

    def cancel(self, dispatch: Dispatch) -> None:
        """The attempt timed out: ask the process to cancel its handler (its late result
        is rejected by lease either way)."""
        self._hub.send_cancel(self, dispatch)

    def deliver(self, dispatch: Dispatch) -> None:
        self.deliver_many([dispatch])

    def deliver_many(self, dispatches: list[Dispatch]) -> None:
        """Several assignments in one `assign` message (the cluster hands over what one
        stimulus dispatched to this worker together)."""
        with self._lock:
            if self._stopped:
                return
            for dispatch in dispatches:
                self._outstanding[dispatch.task_id] = _Slot(dispatch.lease)
        self._hub.send_assign(self, [[d.task_id, d.lease] for d in dispatches])

    def resend(self) -> None:
        with self._lock:
            tasks = [[task_id, slot.lease] for task_id, slot in self._outstanding.items()]
        if tasks:
            self._hub.send_assign(self, tasks)

    def begin(self, task_id: str, lease: int) -> dict | None:
        with self._lock:
            slot = self._outstanding.get(task_id)
            if slot is not None and slot.lease == lease and slot.context is not None:
                return slot.context  # the first answer was lost with a connection
        context = self._cluster.begin_task(self.id, Dispatch(self.id, task_id, lease))
        with self._lock:
            self._begun(task_id, lease, context)
        return context

    def refuse(self, task_id: str, lease: int, reason: str) -> bool:
        """The process will not run this assignment: drain this worker id, which moves it
        (and every other task queued here) now. True if that moved anything."""
        with self._lock:
            slot = self._outstanding.get(task_id)
            if slot is not None and slot.lease == lease:
                del self._outstanding[task_id]
        order_id, _, step = task_id.rpartition(":")
        return self._hub.retire(self, f"refused order {order_id} step {step} "
                                      f"(lease {lease}): {reason}")

    def report(self, task_id: str, lease: int, ok: bool, value: object) -> None:
        self.work([(task_id, lease, ok, value)], [])

    def work(self, results: list[tuple[str, int, bool, object]],
             begins: list[tuple[str, int]], take: int = 0,
             ) -> tuple[list[dict | None], list[list]]:
        """A `work` frame: report the results, then begin the assignments, all in one
        hand-over to the scheduler. Returns their contexts, in their order, and up to
        `take` tasks those results made ready here that the scheduler started at once
        (in memory only), as [task_id, lease, context]: instead of an `assign` and a
        `begin` each, they go back in the answer."""
        outcomes, contexts, starting = [], {}, []
        with self._lock:
            for task_id, lease, ok, value in results:
                if self._first_report(task_id, lease):
                    outcomes.append((Dispatch(self.id, task_id, lease), ok, value))
            for task_id, lease in begins:
                slot = self._outstanding.get(task_id)
                if slot is not None and slot.lease == lease and slot.context is not None:
                    contexts[(task_id, lease)] = slot.context  # its answer was lost
                elif (task_id, lease) not in contexts:
                    contexts[(task_id, lease)] = None
                    starting.append(Dispatch(self.id, task_id, lease))
        # Fenced by the scheduler: a report after this worker was declared dead, or for a
        # task that moved on, is rejected there and recorded as `result_rejected`; a stale
        # lease begins nothing (None).
        started = (self._cluster.report_many(self.id, outcomes, starting,
                                             take=take if outcomes else 0)
                   if outcomes or starting else [])
        taken = []
        with self._lock:
            for dispatch, context in started[len(starting):]:
                if context is not None and not self._stopped:
                    # Remembered as if delivered and begun: sent again after a reconnect,
                    # and a repeated `begin` gets the same context.
                    self._outstanding[dispatch.task_id] = _Slot(dispatch.lease, context)
                    taken.append([dispatch.task_id, dispatch.lease, context])
            for dispatch, context in started[:len(starting)]:
                contexts[(dispatch.task_id, dispatch.lease)] = context
                self._begun(dispatch.task_id, dispatch.lease, context)
        return [contexts[key] for key in begins], taken

    def _first_report(self, task_id: str, lease: int) -> bool:
        """Under the lock: whether this outcome is new (not one sent again after its
        acknowledgement was lost); it is no longer outstanding."""
        key = (task_id, lease)
        if key in self._reported:
            return False
        self._reported[key] = None
        while len(self._reported) > REPORTED_MEMORY:
            self._reported.popitem(last=False)
        slot = self._outstanding.get(task_id)
        if slot is not None and slot.lease == lease:
            del self._outstanding[task_id]
        return True

    def _begun(self, task_id: str, lease: int, context: dict | None) -> None:
        """Under the lock: remember a begun assignment's context, for a repeated `begin`,
        or forget a stale one."""
        slot = self._outstanding.get(task_id)
        if slot is not None and slot.lease == lease and slot.context is None:
            if context is None:
                del self._outstanding[task_id]  # stale: moved or cancelled meanwhile
            else:
                slot.context = context

    def stop(self) -> None:
        """The worker left the ring (declared dead or drained): tell the process."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._outstanding.clear()
        self._hub.worker_left(self)

    def kill(self) -> None:
        self._hub.kill(self)

    def join(self, timeout: float) -> bool:
        return True  # no threads here; the process is on its own
