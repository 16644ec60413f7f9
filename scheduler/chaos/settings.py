"""Every setting of a chaos run, with its default (`orderflow chaos` flags default to these)."""

from __future__ import annotations

from dataclasses import dataclass

# The demo handlers' failure rate and latency during a run (PUT /api/chaos), and in a spike.
CALM = {"failure_rate": 0.05, "latency_ms": [2, 20], "hang_rate": 0.0, "stuck_rate": 0.0}
# A spike also hangs some attempts until their time limit (the run's step timeout) ends them.
SPIKE = {"failure_rate": 0.4, "latency_ms": [50, 300], "hang_rate": 0.02}
# The planned burst of hung attempts, in two parts. First every attempt the server's thread
# workers start is stuck, deaf to its cancellation, so every run sees threads abandoned and
# replaced (worker processes take no stuck rate); it is shorter than the step timeout, so a
# thread worker gets at most its slots of them, within its bound. It comes first: hung
# payments fill the payment quota (chaos/app.py), and a stuck part after them found the
# thread workers starting next to nothing. Then many attempts hang at once for a moment (a
# spike's 2% may, by chance, hang none in a short run), so every run sees time limits at work.
STUCK_BURST = {"stuck_rate": 1.0}
STUCK_BURST_SECONDS = 1.0
HANG_BURST = {"hang_rate": 0.3, "stuck_rate": 0.0}
HANG_BURST_SECONDS = 0.5
# How many times more the hanging part runs while no attempt has timed out yet.
HANG_BURST_AGAIN = 3


@dataclass(frozen=True)
class ChaosSettings:
    # Seconds of faults; then the last orders drain and the journal is checked.
    duration: float = 60.0
    # Seeds the orders, the fault plan and the small faults.
    seed: int = 1
    # Existing server to drive; None = start and own one (which allows the restart fault).
    server: str | None = None
    # The journal to check; default: the owned server's temporary database. The remote
    # workers' logs go next to it.
    db: str | None = None
    token: str | None = None
    # Orders posted per second, by `clients` clients at once (each posts one order at a
    # time: at a failure, as many orders are in flight as there are clients).
    rate: float = 25.0
    clients: int = 4
    # Worker threads of the owned server.
    thread_workers: int = 3
    # Worker processes started by the server (POST /api/workers kind=process): they die
    # with it and are started again after each restart.
    process_workers: int = 2
    # The driver's own `orderflow worker` processes: they outlive every server restart.
    remote_workers: int = 2
    heartbeat_interval: float = 0.2
    heartbeat_timeout: float = 1.0
    max_retries: int = 3
    # The owned server's time limit per attempt: short, so hung attempts (a spike's
    # hang_rate) end within the run as failed attempts "timed out", and are retried.
    step_timeout: float = 2.0
    # Mean seconds between small faults (kills, adds, drains, spikes, short stalls).
    fault_interval: float = 1.0
    # Mean seconds between SIGKILLs and restarts of the owned server; 0 = none.
    restart_every: float = 15.0
    # Mean seconds between long stalls of a remote worker (past the heartbeat timeout); 0 = none.
    long_stall_every: float = 20.0
    # How long to wait for the last orders to finish.
    drain_timeout: float = 120.0
    # How long a remote worker may take to join again (after a restart or a long stall).
    rejoin_timeout: float = 30.0
    # Two servers on one PostgreSQL database (`--db postgresql://...`): the planned restarts
    # kill the leader instead (a SIGKILL, then it starts again as a standby; or, about one
    # in three, a SIGSTOP past its lease, then SIGCONT: it must step down), and the standby
    # must lead within failover_timeout seconds of a SIGKILL.
    ha: bool = False
    failover_timeout: float = 5.0
    # --ha, with PostgreSQL on this machine: mean seconds between freezes of the database
    # (SIGSTOP of its postmaster and backends, then SIGCONT; seeded plan); 0 = none. Each
    # freeze lasts the next of `freeze_seconds` in turn: one below the lease's hold (the
    # leader keeps its term, commits wait), one past it (the leader loses its term with
    # commits in flight).
    freeze_every: float = 20.0
    freeze_seconds: tuple[float, ...] = (3.0, 7.0)
    # Seconds a client waits for the answer to an order before it posts it again with the
    # same key (so a frozen database, or a slow failover, has clients post their keys again
    # while their first request still waits for its commit).
    order_timeout: float = 3.0
    # Share of orders whose first POST gives up after `impatient_timeout` seconds (a client
    # that timed out) and is posted again with its key at once, while the first request may
    # still wait for its commit: the key must never be answered before that commit.
    impatient_share: float = 0.2
    # Share of orders of the saga workflow (chaos/app.py), when the server has it: their
    # charge is refunded when a later step fails for good.
    saga_share: float = 0.3
    # Share of orders of the waits workflow (chaos/app.py), when the server has it: each
    # waits for payment_confirmed, which the driver sends for `signal_share` of them, after
    # a random pause (early, while the order waits, or after its timeout: a 409).
    waits_share: float = 0.2
    signal_share: float = 0.7
    impatient_timeout: tuple[float, float] = (0.01, 0.2)
