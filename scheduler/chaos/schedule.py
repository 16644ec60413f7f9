"""When the big faults of a chaos run happen: a plan drawn from the seed before the run.

Server restarts, long stalls of remote workers and one burst of hung attempts are planned,
not drawn as the run goes: whether they happen must not depend on timing (a seeded 60 s run
always has the same ones), and each needs room after it to show that the cluster recovered.
The small faults (worker kills, adds, drains, spikes, short stalls) are drawn as the run goes
(driver.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RESTART = "server_restart"
LONG_STALL = "long_stall"
HANG_BURST = "hang_burst"
DATABASE_FREEZE = "database_freeze"
HOSTILE_TEXT = "hostile_text"

# Each planned gap is the mean interval times a factor drawn from this range.
SPREAD = (0.8, 1.2)
STALL_SPREAD = (0.7, 1.3)


@dataclass(frozen=True, order=True)
class PlannedFault:
    at: float  # seconds after the run started
    kind: str


def fault_plan(duration: float, restart_every: float, long_stall_every: float,
               rng: random.Random, hang_burst: bool = False,
               freeze_every: float = 0.0, hostile_text: bool = False) -> list[PlannedFault]:
    """Restarts about every `restart_every` seconds and long stalls about every
    `long_stall_every` (0: none of that kind), in time order; with `hang_burst`, one short
    burst of hung attempts early in the run, well before the first restart, so their time
    limit ends them on the server that started them.

    The first long stall comes at about half its interval, before the first restart; none
    of either comes in the last stretch of the run (a restart needs about half an interval,
    at most 10 s, a stall 5 s), so the cluster has time to show it recovered. Database
    freezes (`freeze_every`, 0: none) are placed like the stalls, none in the last 15 s (a
    freeze, a failover after it and the workers joining the leader). With
    `hostile_text`, one hostile worker (hostile.py) joins after the hang burst and before
    the first restart, so the server that recorded its text must go on committing.
    """
    plan: list[PlannedFault] = []
    if restart_every > 0:
        last = duration - min(10.0, restart_every / 2)
        at = restart_every * rng.uniform(*SPREAD)
        while at <= last:
            plan.append(PlannedFault(round(at, 3), RESTART))
            at += restart_every * rng.uniform(*SPREAD)
    if long_stall_every > 0:
        last = duration - 5.0
        at = long_stall_every / 2 * rng.uniform(*STALL_SPREAD)
        while at <= last:
            plan.append(PlannedFault(round(at, 3), LONG_STALL))
            at += long_stall_every * rng.uniform(*STALL_SPREAD)
    if hang_burst:
        first_restart = restart_every * SPREAD[0] if restart_every > 0 else duration
        plan.append(PlannedFault(round(min(first_restart, duration) * rng.uniform(0.2, 0.35), 3),
                                 HANG_BURST))
    if hostile_text:
        first_restart = restart_every * SPREAD[0] if restart_every > 0 else duration
        plan.append(PlannedFault(round(min(first_restart, duration) * rng.uniform(0.4, 0.55),
                                       3), HOSTILE_TEXT))
    if freeze_every > 0:  # drawn last: the plans without freezes stay as they were
        last = duration - 15.0
        at = freeze_every / 2 * rng.uniform(*STALL_SPREAD)
        while at <= last:
            plan.append(PlannedFault(round(at, 3), DATABASE_FREEZE))
            at += freeze_every * rng.uniform(*STALL_SPREAD)
    return sorted(plan)
