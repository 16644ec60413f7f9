"""The faults of a chaos run, carried out against the driver's server and remote workers.

Small faults are drawn as the run goes (`one_fault`); server restarts (with --ha: failovers,
the leader killed), long stalls and (--ha) freezes of the database come from the seeded plan
(schedule.py). A fault that should have had an effect checks that it had it (a long stall
ends in a death and a new id; a short one in none; every remote worker joins the restarted
server, or the new leader; a server leads after a freeze) and reports a problem otherwise.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..engine.config import ClusterConfig
from ..journal.lease import LeaseSettings
from .fleet import NAME_PREFIX, RemoteWorker
from .hostile import HostileWorker
from .schedule import DATABASE_FREEZE, HANG_BURST, HOSTILE_TEXT, RESTART, fault_plan
from .serve_process import health
from .settings import (
    CALM,
    HANG_BURST_AGAIN,
    HANG_BURST_SECONDS,
    SPIKE,
    STUCK_BURST,
    STUCK_BURST_SECONDS,
)
from .settings import HANG_BURST as HANG_BURST_CHAOS

if TYPE_CHECKING:
    from .driver import Driver

CHAOS_APP = "scheduler.chaos.app:app"
# The same code as another version, deployed at the first server restart.
CHAOS_APP_V2 = "scheduler.chaos.app:app_v2"


def _with_app(flags: tuple[str, ...], app: str) -> tuple[str, ...]:
    """A server's flags with `--app` naming `app` instead."""
    at = flags.index("--app")
    return (*flags[:at + 1], app, *flags[at + 2:])


def _runs(flags: tuple[str, ...], app: str) -> bool:
    """Whether a server started with `flags` runs `app`."""
    return flags[flags.index("--app") + 1] == app

T = TypeVar("T")
# How long past the step timeout an attempt hung in a burst takes to be counted as timed
# out by the server (the core's timer, then the answer to GET /api/stats).
HANG_EVIDENCE_GRACE = 2.0
# After a freeze, 503s are put down to it for this long (seconds): a leader that lost its
# term steps down and the next one recovers before anything is accepted again.
FREEZE_AFTERMATH = 10.0


def _last_lines(path, count: int) -> list[str]:
    """The last `count` lines of a log (to say what a worker was doing), [] if unreadable."""
    try:
        with open(path, errors="replace") as log:
            return [line.rstrip() for line in log.readlines()[-count:]]
    except OSError:
        return []


def _epoch(server) -> int | None:
    """The epoch a server leads (its /healthz), None if it does not lead or answer."""
    if server is None:
        return None
    code, body = health(server.url)
    return body.get("epoch") if code == 200 else None


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """The first truthy value of `predicate`, or None once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value or None
        threading.Event().wait(interval)


class Faults:
    """Each fault as a method; `run(duration)` injects them for the run's duration."""

    def __init__(self, driver: Driver):
        self.driver = driver
        self.freezes = 0
        # Thread workers neither killed nor drained until then (monotonic time), by id: the
        # one that joins for the hang burst, so its stuck handlers live to be abandoned.
        self.spared: dict[str, float] = {}
        # The planned burst of hung attempts: whether it has the demo handlers' chaos (a
        # spike waits), the lock under which chaos is set and that is asked, the thread
        # that carries out its rest, when its tries must end (monotonic time: the next
        # planned restart), and the word to stop early.
        self._bursting = False
        self._chaos_lock = threading.Lock()
        self._burst: threading.Thread | None = None
        self.burst_deadline = math.inf
        self._stop_burst = threading.Event()

    def check_fleet(self) -> None:
        """A remote worker must never exit by itself: say so, and replace it."""
        d = self.driver
        if d.fleet is None:
            return
        for worker in d.fleet.exited():
            if worker.name not in d.killed:
                d.killed.add(worker.name)  # reported once
                # The log goes with the run's folder: its last lines go in the report.
                d.problem("remote_worker_exited",
                          f"{worker.name} (pid {worker.pid}) exited with status "
                          f"{worker.process.returncode}; the last lines of its log: "
                          + " | ".join(_last_lines(worker.log_path, 8)))
                d.fleet.start(1)

    def one_fault(self) -> None:
        """A small fault, drawn now."""
        d = self.driver
        alive = d.alive()
        # The driver's remote workers are stalled and killed by pid, never from the API
        # (a drain would make the process exit, as the protocol says).
        now = time.monotonic()
        victims = [w for w in alive if not str(w.get("name", "")).startswith(NAME_PREFIX)
                   and self.spared.get(w["id"], 0.0) <= now]
        choice = d.rng.choices(
            ["kill", "add", "drain", "spike", "short_stall", "kill_remote"],
            weights=[5, 4, 1, 2, 2, 1])[0]
        if choice == "kill" and len(victims) > 2:
            victim = d.rng.choice(victims)
            d.call("POST", f"/api/workers/{victim['id']}/kill")
            d.note(f"kill_{victim.get('kind', 'thread')}_worker")
        elif choice == "drain" and len(victims) > 2:
            victim = d.rng.choice(victims)
            d.call("POST", f"/api/workers/{victim['id']}/drain")
            d.note("drain_worker")
        elif choice == "spike":
            if self.for_a_moment(SPIKE, 1.0) is not None:
                d.note("failure_and_latency_spike")
        elif choice == "short_stall" and d.fleet and d.fleet.running():
            self.short_stall()
        elif choice == "kill_remote" and d.fleet and d.fleet.running():
            victim = d.rng.choice(d.fleet.running())
            d.killed.add(victim.name)
            d.fleet.kill(victim)
            d.fleet.start(1)
            d.note("kill_remote_worker", f"{victim.name} SIGKILLed, a new one started")
        else:
            d.add_worker(d.rng.choice(["thread", "process"]))
        d.ensure_workers()

    def restart_server(self) -> None:
        """SIGKILL the server's process group and start it again on the same database and
        port; sometimes with a remote worker SIGSTOPped across it. Every remote worker must
        join the new server."""
        d = self.driver
        assert d.server is not None
        across = None
        if d.fleet and d.fleet.running() and d.rng.random() < 0.3:
            across = d.rng.choice(d.fleet.running())
            d.fleet.stall(across)
        d.pause_orders()
        d.server.kill()
        killed_at = time.monotonic()
        d.start_walls.append(time.time())
        d.lead_ended(killed_at)
        flags = None
        if not d.deployed:
            # The first restart deploys the second version: the server comes back with it,
            # the fleet's running workers stay on the first until its orders are done.
            flags = _with_app(d.server.flags, CHAOS_APP_V2)
        d.server = d.server.restarted(flags=flags)
        d.server_start += 1
        d.lead_began(time.monotonic())
        d.resume_orders()
        took = time.monotonic() - killed_at
        if across is not None:
            # Continued a little after the new server is up, so it sometimes comes back
            # after the others have joined.
            threading.Event().wait(d.rng.uniform(0, 2) * d.settings.heartbeat_timeout)
            d.fleet.resume(across)
            d.note("stall_across_restart", f"{across.name} SIGSTOPped during the restart")
        d.note("server_sigkill_and_restart", f"back on port {d.server.port} in {took:.1f}s")
        if flags is not None:
            self._deployed()
        for _ in range(d.settings.process_workers):
            d.add_worker("process")
        self._check_rejoined(killed_at, "restart")

    def _deployed(self) -> None:
        """The second version runs: as many fleet workers of it join as run the first."""
        d = self.driver
        d.deployed = True
        if d.fleet is None:
            return
        old = d.fleet.running()
        d.old_workers.update(w.name for w in old)
        d.fleet.args = ("--app", CHAOS_APP_V2)
        d.fleet.start(len(old))
        d.note("deploy", f"{CHAOS_APP_V2} deployed; {len(old)} worker(s) of the first "
                         "version stay until its orders are done")

    def old_version_left(self) -> int | None:
        """Unfinished orders of definitions the server's app lacks (None: not known now)."""
        stats = self.driver.stats()
        if stats is None:
            return None
        return sum(d["unfinished"] for d in stats.get("definitions", []) if not d["current"])

    def keep_old_version(self, drain: bool = False) -> None:
        """A rolling deploy's upkeep: while orders of the first version are unfinished, a
        fleet worker of it runs (one is started if faults took them all); once none is
        left and `drain`, its workers are drained (SIGTERM: they exit when idle)."""
        d = self.driver
        if not d.deployed or d.fleet is None:
            return
        left = self.old_version_left()
        old = [w for w in d.fleet.running() if w.name in d.old_workers]
        if left and not old:
            (started,) = d.fleet.start(1, args=("--app", CHAOS_APP))
            d.old_workers.add(started.name)
            d.note("old_version_worker_started", f"{left} order(s) of the first version left")
        elif left == 0 and old and drain and self._every_server_deployed():
            for worker in old:
                d.killed.add(worker.name)  # its exit is the drain's, not a fault
                worker.process.send_signal(signal.SIGTERM)
            d.note("old_version_drained", f"{len(old)} worker(s) of the first version")

    def _every_server_deployed(self) -> bool:
        """Whether every server runs the second version (--ha: until the second failover a
        server of the first may lead, and counts its own orders as current: its workers
        must not go yet). Without --ha the one server does once `deployed`."""
        return all(_runs(server.flags, CHAOS_APP_V2) for server in self.driver.servers)

    def kill_leader(self) -> None:
        """--ha: SIGKILL the leader (it starts again, as a standby), or, about one time in
        three, SIGSTOP it past its lease and then SIGCONT it: the standby must lead (within
        `failover_timeout` of a SIGKILL), the paused one must step down when it wakes, and
        every remote worker must join the new leader."""
        d = self.driver
        leader = d.leading_server()
        if leader is None:
            d.problem("no_leader", "no server answered /healthz as the leader before a kill")
            return
        standby = next(s for s in d.servers if s is not leader)
        # The first failover is a SIGKILL: the killed leader comes back with the second
        # version (a rolling deploy), which a paused one, continued as it was, cannot.
        pause = d.rng.random() < 0.3 and d.deployed
        across = None
        if not pause and d.fleet and d.fleet.running() and d.rng.random() < 0.3:
            across = d.rng.choice(d.fleet.running())
            d.fleet.stall(across)
        if pause:
            leader.pause()
        else:
            leader.kill()
        killed_at = time.monotonic()
        d.start_walls.append(time.time())
        d.lead_ended(killed_at)
        patience = d.settings.failover_timeout + 10.0 + (8.0 if pause else 0.0)
        led = wait_until(lambda: health(standby.url)[0] == 200, patience, interval=0.02)
        took = time.monotonic() - killed_at
        how = "sigstop" if pause else "sigkill"
        if not led:
            d.problem("standby_did_not_lead", f"{standby.url} did not lead within "
                                              f"{patience:.0f}s of the {how} of {leader.url}")
        else:
            d.timings[f"failover_after_{how}_s"].append(took)
            if not pause and took > d.settings.failover_timeout:
                d.problem("failover_too_slow",
                          f"{standby.url} led {took:.2f}s after the SIGKILL of {leader.url} "
                          f"(at most {d.settings.failover_timeout:g}s)")
        d.url = standby.url
        d.server_start += 1
        if led:
            d.lead_began(killed_at + took)
        if pause:
            leader.resume()
            stepped = wait_until(lambda: health(leader.url)[1].get("role") == "standby", 15)
            if not stepped:
                d.problem("paused_leader_kept_leading",
                          f"{leader.url} did not answer as a standby within 15s of its SIGCONT")
            d.note("leader_sigstop", f"{leader.url} paused; {standby.url} led after "
                                     f"{took:.2f}s; the old one stood down when continued")
        else:
            # A rolling deploy across the failovers: each killed server comes back (a
            # standby) with the second version, so the second kill hands the lead to it.
            flags = None if _runs(leader.flags, CHAOS_APP_V2) else _with_app(
                leader.flags, CHAOS_APP_V2)
            d.servers[d.servers.index(leader)] = leader.restarted(flags=flags)
            d.note("leader_sigkill", f"{leader.url} killed; {standby.url} led after "
                                     f"{took:.2f}s; the old one is back as a standby")
            if flags is not None and not d.deployed:
                self._deployed()
        if across is not None:
            threading.Event().wait(d.rng.uniform(0, 2) * d.settings.heartbeat_timeout)
            d.fleet.resume(across)
            d.note("stall_across_failover", f"{across.name} SIGSTOPped during the failover")
        for _ in range(d.settings.process_workers):
            d.add_worker("process")
        self._check_rejoined(killed_at, "failover")

    def freeze_database(self) -> None:
        """--ha: SIGSTOP PostgreSQL (its postmaster and every backend) for the next of
        `freeze_seconds`, orders flowing, then SIGCONT. Commits wait meanwhile; impatient
        clients post their keys again (never to be answered before the commit); a freeze
        past the lease's hold costs the leader its term with commits in flight. Afterwards
        a server must lead (the same or the other) and every remote worker work for it."""
        d = self.driver
        durations = d.settings.freeze_seconds
        seconds = durations[self.freezes % len(durations)]
        self.freezes += 1
        # A server restarted a moment ago says it listens before its app is built; built
        # while the database is frozen, it could not reach it and would exit (as it should:
        # a supervisor starts it again). Freeze a database whose servers are all up.
        if not wait_until(lambda: all(health(s.url)[0] for s in d.servers), 30):
            d.problem("server_not_up", "a server did not answer /healthz within 30s of "
                                       "the planned database freeze")
        epoch = _epoch(d.leading_server())
        d.frozen_until = math.inf
        d.freezer.freeze()
        frozen_at = time.monotonic()
        try:
            threading.Event().wait(seconds)
        finally:
            d.freezer.thaw()
            d.frozen_until = time.monotonic() + FREEZE_AFTERMATH
        thawed_at = time.monotonic()
        patience = d.settings.failover_timeout + 10.0
        leader = wait_until(self._one_leader, patience, interval=0.02)
        if leader is None:
            d.lead_ended(frozen_at)
            d.problem("no_leader_after_freeze", f"no server led within {patience:.0f}s of "
                                                f"the SIGCONT of a {seconds:g}s freeze")
            d.note("database_freeze", f"PostgreSQL SIGSTOPped {seconds:g}s: NO leader after")
            return
        led_at = time.monotonic()
        if epoch is None or _epoch(leader) != epoch:
            # The leader lost its term in the freeze: the next one recovers, holds its
            # limited steps and inherits the attempts in flight, as after a kill.
            d.lead_ended(frozen_at)
            d.lead_began(led_at)
        d.url = leader.url
        d.timings["failover_after_freeze_s"].append(led_at - thawed_at)
        d.note("database_freeze", f"PostgreSQL SIGSTOPped {seconds:g}s; {leader.url} led "
                                  f"{led_at - thawed_at:.2f}s after the SIGCONT")
        self._check_rejoined(thawed_at, "freeze")
        # A leader that lost its term in the freeze has stepped down by now, and leaves the
        # lease to the others for the holdoff: a SIGKILL of the next leader before that
        # ends would wait for it (as it should), which the next failover's time limit does
        # not allow for. So the fault lasts until then.
        threading.Event().wait(max(0.0, led_at + LeaseSettings().holdoff - time.monotonic()))

    def _one_leader(self):
        """The server that leads, once the others stand by naming it (after a freeze the old
        leader answers as such until it finds its term over, and a standby names nobody
        while the lease is expired); None until then."""
        views = [(server, health(server.url)) for server in self.driver.servers]
        leaders = [server for server, (code, _) in views if code == 200]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        if all(body.get("role") == "standby" and body.get("leader") == leader.url
               for server, (_, body) in views if server is not leader):
            return leader
        return None

    def _check_rejoined(self, since: float, what: str) -> None:
        d = self.driver
        if d.fleet is None:
            return
        running = d.fleet.running()
        joined = wait_until(lambda: all(d.member(w) for w in running),
                            d.settings.rejoin_timeout)
        if joined:
            d.timings[f"rejoin_after_{what}_s"].append(time.monotonic() - since)
        else:
            missing = [w for w in running if not d.member(w)]
            d.problem(f"remote_worker_not_rejoined_after_{what}",
                      f"{what} {d.server_start}: {', '.join(w.name for w in missing)} did not "
                      f"join the new {'server' if what == 'restart' else 'leader'} within "
                      f"{d.settings.rejoin_timeout:.0f}s; the last lines of its log: "
                      + " | ".join(_last_lines(missing[0].log_path, 8) if missing else []))

    def hang_burst(self) -> None:
        """Hung handlers (settings.py): first stuck ones on the server's thread workers, then
        ones that hang until their time limit; calm again after (a thread: the run goes on).
        A thread worker joins first and is spared kills and drains until its stuck handlers'
        threads are abandoned (the run's kills and drains may have left no thread worker, or
        taken the stuck handlers with theirs)."""
        d = self.driver
        response = d.call("POST", "/api/workers", json={"count": 1})
        if response is not None and response.status_code == 201:
            d.note("add_thread_worker")
            spare = (STUCK_BURST_SECONDS + d.settings.step_timeout
                     + ClusterConfig().abandon_after + 1.0)
            for worker_id in response.json()["ids"]:
                self.spared[worker_id] = time.monotonic() + spare
        baseline = self._timed_out_attempts()
        with self._chaos_lock:
            self._bursting = True
            d.call("PUT", "/api/chaos", json=STUCK_BURST)
        d.note("hang_burst")
        self._burst = threading.Thread(target=self._rest_of_burst, args=(baseline,),
                                       name="chaos-hang-burst", daemon=True)
        self._burst.start()

    def _rest_of_burst(self, baseline: int | None) -> None:
        """The burst's hanging part, then calm; then, until an attempt is seen to have run
        past its time limit (a stuck one's counts), the hanging part again: at most
        HANG_BURST_AGAIN times, and only while it can end before the next planned restart
        (`burst_deadline`; with --ha, the leader's kill), so its time limits end its
        attempts on the server that started them. On a loaded machine, or with a failover
        in the burst, its half second may start no attempt that hangs, and the run would
        show no time limit at work. Spikes wait until it is over (`bursting`)."""
        d = self.driver
        stop = self._stop_burst
        try:
            stop.wait(STUCK_BURST_SECONDS)
            for again in range(HANG_BURST_AGAIN + 1):
                if stop.is_set():
                    return
                if again:
                    if (time.monotonic() + HANG_BURST_SECONDS + d.settings.step_timeout
                            > self.burst_deadline):
                        d.note("hang_burst_out_of_time", "no attempt had timed out, and "
                               "another try would run into the next planned restart")
                        return
                    d.note("hang_burst_again", "no attempt had timed out yet")
                d.call("PUT", "/api/chaos", json=HANG_BURST_CHAOS)
                stop.wait(HANG_BURST_SECONDS)
                d.call("PUT", "/api/chaos", json=CALM)
                if baseline is None or wait_until(
                        lambda: stop.is_set() or (self._timed_out_attempts() or 0) > baseline,
                        d.settings.step_timeout + HANG_EVIDENCE_GRACE, interval=0.2):
                    return
        finally:
            with self._chaos_lock:
                if stop.is_set():
                    d.call("PUT", "/api/chaos", json=CALM)  # cut short: calm whatever it set
                self._bursting = False

    def _timed_out_attempts(self) -> int | None:
        """Attempts that ran past their time limit, as the server counts them; None if it
        does not answer."""
        stats = self.driver.stats()
        return None if stats is None else stats.get("timed_out_attempts")

    def bursting(self) -> bool:
        """Whether the planned burst of hung attempts has the demo handlers' chaos: a spike
        must not set it, nor a spike's end calm it (asked under `_chaos_lock`)."""
        return self._bursting

    def hostile_text(self) -> None:
        """A remote worker whose name, host and tags hold a NUL and a lone surrogate, and
        whose attempts end with errors (and results) quoting a gateway body that holds them
        (hostile.py): the server must show its tags escaped and go on committing orders."""
        d = self.driver
        acked = len(d.acked)
        report = HostileWorker(d.url, d.settings.token).run(attempts=4, timeout=6.0)
        for problem in report.problems:
            d.problem("hostile_worker", problem)
        if report.worker_id is None:
            return
        shown = next((w for w in d.workers() if w["id"] == report.worker_id), None)
        if shown is None or "nul\\x00tag" not in shown.get("tags", []):
            d.problem("hostile_text_not_escaped",
                      f"{report.worker_id}'s tags as shown: {shown and shown.get('tags')}")
        if not wait_until(lambda: len(d.acked) > acked + 3, 20):
            d.problem("no_commit_after_hostile_text",
                      "orders stopped being acknowledged after a worker sent text no "
                      "journal can hold")
        d.faults["hostile_attempts"] = (d.faults.get("hostile_attempts", 0) + report.failed
                                        + report.succeeded)
        d.note("hostile_text", f"{report.worker_id}: {report.failed} error(s) and "
                               f"{report.succeeded} result(s) quoting a NUL and a lone "
                               "surrogate")

    def for_a_moment(self, chaos: dict, seconds: float) -> threading.Timer | None:
        """Set the demo handlers' chaos, and calm again `seconds` later: neither while the
        planned burst has them (None then: nothing was set)."""
        d = self.driver
        with self._chaos_lock:
            if self.bursting():
                return None
            d.call("PUT", "/api/chaos", json=chaos)

        def calm() -> None:
            with self._chaos_lock:
                if not self.bursting():
                    d.call("PUT", "/api/chaos", json=CALM)

        calm_again = threading.Timer(seconds, calm)
        calm_again.daemon = True
        calm_again.start()
        return calm_again

    def long_stall(self) -> None:
        """SIGSTOP a remote worker until the server declares it dead (at least 2-3 heartbeat
        timeouts), then SIGCONT: it must join again under a new id."""
        d = self.driver
        picked = self._remote_member(busy=True)
        if picked is None:
            return
        worker, old_id = picked
        timeout = d.settings.heartbeat_timeout
        d.fleet.stall(worker)
        stalled_at = time.monotonic()
        threading.Event().wait(timeout * d.rng.uniform(2.0, 3.0))
        dead = wait_until(lambda: d.status(old_id) == "dead", timeout + 10)
        d.fleet.resume(worker)
        stalled = time.monotonic() - stalled_at
        if not dead:
            d.problem("long_stall_without_death",
                      f"{worker.name} ({old_id}) stalled {stalled:.1f}s, not declared dead")
            d.note("long_stall", f"{worker.name} ({old_id}) {stalled:.1f}s: NOT declared dead")
            return
        d.faults["long_stall_deaths"] = d.faults.get("long_stall_deaths", 0) + 1
        resumed_at = time.monotonic()
        new_id = wait_until(lambda: (m := d.member(worker)) != old_id and m,
                            d.settings.rejoin_timeout)
        if new_id is None:
            d.problem("stalled_worker_not_rejoined",
                      f"{worker.name} ({old_id}) declared dead after a {stalled:.1f}s stall "
                      f"and not back within {d.settings.rejoin_timeout:.0f}s")
            d.note("long_stall", f"{worker.name} ({old_id}) {stalled:.1f}s: dead, NOT back")
            return
        d.faults["long_stall_rejoins"] = d.faults.get("long_stall_rejoins", 0) + 1
        d.timings["rejoin_after_stall_s"].append(time.monotonic() - resumed_at)
        d.note("long_stall", f"{worker.name} ({old_id}) {stalled:.1f}s: declared dead, "
                             f"back as {new_id}")

    def short_stall(self) -> None:
        """SIGSTOP a remote worker for 20-40% of the heartbeat timeout: no death allowed."""
        d = self.driver
        picked = self._remote_member()
        if picked is None:
            return
        worker, worker_id = picked
        timeout = d.settings.heartbeat_timeout
        d.fleet.stall(worker)
        threading.Event().wait(timeout * d.rng.uniform(0.2, 0.4))
        d.fleet.resume(worker)
        d.note("short_stall", f"{worker.name} ({worker_id})")
        # Past the timeout, counted from the stall: a death would have been declared by now.
        threading.Event().wait(timeout)
        if d.status(worker_id) == "dead":
            d.problem("short_stall_death",
                      f"{worker.name} ({worker_id}) declared dead after a stall shorter "
                      "than the heartbeat timeout")

    def _remote_member(self, busy: bool = False) -> tuple[RemoteWorker, str] | None:
        """A running remote worker and its id; with `busy`, one holding tasks if any does
        (its tasks must move, and its late results be fenced)."""
        d = self.driver
        if d.fleet is None:
            return None
        alive = {w.get("name"): w for w in d.alive()}
        # Not one told to go (a drained worker of the first version, exiting once idle):
        # stalled and declared dead, it exits on waking instead of joining again.
        members = [(w, alive[w.name]) for w in d.fleet.running()
                   if w.name in alive and w.name not in d.killed]
        holding = [(w, v) for w, v in members if v.get("current_task") or v.get("queued")]
        pick = holding if busy and holding else members
        if not pick:
            return None
        worker, view = d.rng.choice(pick)
        return worker, view["id"]

    def run(self, duration: float) -> None:
        """Small faults about every `fault_interval` seconds, the planned ones on time."""
        d = self.driver
        settings = d.settings
        plan = fault_plan(duration, settings.restart_every if d.server or d.servers else 0.0,
                          settings.long_stall_every if d.fleet else 0.0,
                          random.Random(settings.seed + 2),
                          hang_burst=(d.server is not None or bool(d.servers))
                          and settings.step_timeout > 0,
                          freeze_every=settings.freeze_every if d.freezer else 0.0,
                          hostile_text=True)
        print("  plan: " + (", ".join(f"{p.kind} at {p.at:.0f}s" for p in plan) or "none"),
              file=d.out, flush=True)
        started = time.monotonic()
        next_small = d.rng.expovariate(1 / settings.fault_interval)
        # A planned fault is never dropped: on a busy machine the faults before it may take
        # so long that its time comes after the run's end; it then runs late (and says so).
        while (elapsed := time.monotonic() - started) < duration or plan:
            if elapsed < duration:
                due = min(next_small, plan[0].at if plan else duration, duration)
            else:
                due = plan[0].at
            if due > elapsed:
                threading.Event().wait(due - elapsed)
                continue
            self.check_fleet()
            self.keep_old_version(drain=True)
            if plan and plan[0].at <= elapsed:
                planned = plan.pop(0)
                if elapsed >= duration:
                    print(f"  late: {planned.kind} planned at {planned.at:.0f}s runs at "
                          f"{elapsed:.1f}s, after the run's end (the faults before it took "
                          "long)", file=d.out, flush=True)
                if planned.kind == RESTART:
                    self.kill_leader() if d.servers else self.restart_server()
                elif planned.kind == DATABASE_FREEZE:
                    self.freeze_database()
                elif planned.kind == HANG_BURST:
                    # A failover or restart ends what the burst hung with its server.
                    after = [p.at for p in plan if p.kind == RESTART]
                    self.burst_deadline = started + min(after, default=math.inf)
                    self.hang_burst()
                elif planned.kind == HOSTILE_TEXT:
                    self.hostile_text()
                else:
                    self.long_stall()
            else:
                self.one_fault()
                next_small = elapsed + d.rng.expovariate(1 / settings.fault_interval)
        if self._burst is not None:
            self._burst.join(60)  # its parts and waits: well under a minute
            self._stop_burst.set()  # if not: it stops (calm) at its next step
