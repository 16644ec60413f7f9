"""Attempts that may still run on a worker the scheduler no longer counts on ("zombies").

A worker declared dead may only have stalled (a pause, a lost network): its tasks move on so
the orders make progress, but its handlers may still be running. For a step with
`max_in_flight` such an attempt keeps its place in the step's count until it can no longer
be running:

- its worker confirms that it ended: a late result or failure (rejected by fencing, but it
  says the handler returned), or, when its process registers again, the list of what it
  still runs (anything else it ran under the ids it names has ended);
- its process is known gone: a thread worker's handler returned after the worker left;
- its bound passed: a remote worker cancels an attempt at its time limit on its own clock,
  and one that is not alive on the server exits when a handler ignores that, so by the
  time limit plus a grace the handler has ended, or its process has. Thread workers have no
  bound: the server sees their threads, and a handler that never returns keeps its place.

Pure: time is passed in. The core decides what becomes a zombie and what a release frees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Zombie:
    """One attempt that may still be running on `worker_id`."""

    worker_id: str
    task_id: str
    lease: int  # 0: not known (inherited from the journal after a restart); any lease matches
    step: str
    attempt: int
    deadline: float | None  # when its time limit ends (core time), if known
    bound: float | None  # when it can no longer be running; None: only a confirmation ends it

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.worker_id, self.task_id, self.lease)


class Zombies:
    """The zombies, by (worker, task, lease), with the earliest bound kept at hand so a tick
    with nothing due costs one comparison."""

    def __init__(self) -> None:
        self._all: dict[tuple[str, str, int], Zombie] = {}
        self._next: float | None = None

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self):
        return iter(list(self._all.values()))

    def add(self, zombie: Zombie) -> bool:
        """Count `zombie`; False if it is counted already (then the later bound is kept)."""
        known = self.find(zombie.worker_id, zombie.task_id, zombie.lease)
        if known is not None:
            if known.bound is not None and (zombie.bound is None or zombie.bound > known.bound):
                known.bound = zombie.bound
            return False
        self._all[zombie.key] = zombie
        self._note(zombie.bound)
        return True

    def find(self, worker_id: str, task_id: str, lease: int) -> Zombie | None:
        """The zombie of that attempt: by its lease, or one whose lease is not known."""
        found = self._all.get((worker_id, task_id, lease))
        if found is None and lease:
            found = self._all.get((worker_id, task_id, 0))
        if found is None and not lease:
            found = next((z for z in self._all.values()
                          if z.worker_id == worker_id and z.task_id == task_id), None)
        return found

    def remove(self, zombie: Zombie) -> None:
        if self._all.pop(zombie.key, None) is not None and zombie.bound == self._next:
            self._recount()

    def of_workers(self, worker_ids: Iterable[str]) -> list[Zombie]:
        ids = set(worker_ids)
        return [z for z in self._all.values() if z.worker_id in ids]

    def count(self, step: str) -> int:
        return sum(1 for z in self._all.values() if z.step == step)

    def bind(self, worker_id: str, bound_of) -> None:
        """Give the unbound zombies of `worker_id` a bound, `bound_of(zombie)` (its worker
        left: no result will confirm them any more)."""
        for zombie in self._all.values():
            if zombie.worker_id == worker_id and zombie.bound is None:
                zombie.bound = bound_of(zombie)
                self._note(zombie.bound)

    def expired(self, now: float) -> list[Zombie]:
        """Remove and return the zombies whose bound is at or before `now`, oldest first."""
        if self._next is None or now < self._next:
            return []
        due = sorted((z for z in self._all.values() if z.bound is not None and z.bound <= now),
                     key=lambda z: (z.bound, z.key))
        for zombie in due:
            del self._all[zombie.key]
        self._recount()
        return due

    def next_bound(self) -> float | None:
        """The earliest bound still ahead (None: none has one)."""
        return self._next

    def _note(self, bound: float | None) -> None:
        if bound is not None and (self._next is None or bound < self._next):
            self._next = bound

    def _recount(self) -> None:
        bounds = [z.bound for z in self._all.values() if z.bound is not None]
        self._next = min(bounds) if bounds else None
