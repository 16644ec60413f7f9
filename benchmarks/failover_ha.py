"""Failover time of the scheduler itself: two `orderflow serve` on one PostgreSQL database, the
leader SIGKILLed 10 times, then SIGSTOPped 10 times, at the default settings (lease ttl 4 s,
renewed every 0.5 s, a standby looking every 0.25 s).

A throwaway PostgreSQL (tests/pg.py, its durable defaults), two servers (2 thread workers
each, the demo's steps at 5-20 ms) and one `orderflow worker --server A,B`. Each round puts
work in flight on the leader (100 orders), SIGKILLs its process group and measures, from the
kill (wall clock, same machine):
  lead   until the standby's /healthz answers 200: elected, its state recovered from the
         database, serving;
  work   until a step starts on the new leader (the `ts` of its first `task_started`);
then starts the killed server again on its port (a standby) and goes on with the roles
swapped. A SIGKILL ends the leader's database sessions at once (the kernel closes its
sockets), so the standby sees the lease free at its next look. The SIGSTOP rounds stand for a
leader that goes silent without its connections closing (its machine lost, frozen, cut off):
the standby leads once the lease expires; the paused one is then continued and must stand by.
Prints one JSON line: p50/p99/max of both for each kind, and whether p99 of `lead` after a
SIGKILL is within 5 s (exit status 1 if not).

    python benchmarks/failover_ha.py [--kills 10] [--pauses 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' throwaway PostgreSQL server
from common import emit, percentile  # noqa: E402

BOUND = 5.0  # seconds from the SIGKILL to the standby leading (the promise)
IN_FLIGHT = 100  # orders put in flight on the leader before each kill


def wait(predicate, timeout: float, what: str, interval: float = 0.01):
    """The first truthy value of `predicate`; polling servers we do not own a handle on."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Bench:
    def __init__(self, url: str, folder: Path):
        import requests

        from scheduler.chaos.serve_process import ServeProcess

        self.http = requests.Session()
        self.flags = ("--db", url, "--workers", "2", "--failure-rate", "0", "--latency-ms",
                      "5,20", "--log-level", "error")
        self.folder = folder
        self.servers, self.worker = [], None
        try:
            self.servers.append(ServeProcess(*self.flags, "--log-file", str(folder / "a.log")))
            self.wait_role(self.servers[0], "leader")
            self.servers.append(ServeProcess(*self.flags, "--log-file", str(folder / "b.log")))
            self.wait_role(self.servers[1], "standby", leader=self.servers[0].url)
            with (folder / "worker.log").open("w") as log:
                self.worker = subprocess.Popen(
                    [sys.executable, "-m", "scheduler", "worker", "--server",
                     ",".join(s.url for s in self.servers), "--log-level", "warning"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except BaseException:
            self.close()  # nothing started is left behind
            raise

    def health(self, server) -> dict:
        try:
            return self.http.get(f"{server.url}/healthz", timeout=2).json()
        except Exception:  # noqa: BLE001 - down or starting: not an answer
            return {}

    def wait_role(self, server, role: str, leader: str | None = None) -> None:
        wait(lambda: self.health(server).get("role") == role and (
            leader is None or self.health(server).get("leader") == leader), 60,
            f"{server.url} to be {role}")

    def first_start_after(self, server, wall: float) -> float:
        """The `ts` of the first step started on `server` after `wall`."""
        after = 0

        def started():
            nonlocal after
            page = self.http.get(f"{server.url}/api/events",
                                 params={"after": after, "limit": 5000}, timeout=10).json()
            for event in page["events"]:
                if event["type"] == "task_started" and event["ts"] > wall:
                    return event["ts"]
            if page["events"]:
                after = page["events"][-1]["seq"]
            return None

        return wait(started, 60, "a step to start on the new leader", interval=0.02)

    def one_kill(self, pause: bool = False) -> tuple[float, float]:
        leader, standby = self.servers
        response = self.http.post(f"{leader.url}/api/orders/bulk", json={"count": IN_FLIGHT},
                                  timeout=60)
        response.raise_for_status()
        killed = time.time()
        if pause:
            leader.pause()  # the whole process group; its connections stay open
        else:
            leader.kill()  # the whole process group, at once
        wait(lambda: self.health(standby).get("role") == "leader", 60,
             "the standby to lead", interval=0.005)
        lead = time.time() - killed
        work = self.first_start_after(standby, killed) - killed
        if pause:
            leader.resume()
            again = leader
        else:
            again = leader.restarted()
        self.servers = [standby, again]
        self.wait_role(again, "standby", leader=standby.url)
        return lead, work

    def close(self) -> None:
        if self.worker is not None:
            if self.worker.poll() is None:
                os.kill(self.worker.pid, signal.SIGKILL)
            self.worker.wait(10)
        for server in self.servers:
            server.resume()  # a paused one must be able to die
            server.kill()
        self.http.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--pauses", type=int, default=10)
    args = parser.parse_args()
    from pg import PostgresServer, missing

    reason = missing()
    if reason is not None:
        print(f"failover_ha: skipped: {reason}", file=sys.stderr)
        return 0
    leads, works, paused_leads, paused_works = [], [], [], []
    postgres = PostgresServer().start()  # PostgreSQL's durable defaults
    try:
        with tempfile.TemporaryDirectory() as folder:
            bench = Bench(postgres.create_database(), Path(folder))
            try:
                for _ in range(args.kills):
                    lead, work = bench.one_kill()
                    leads.append(lead)
                    works.append(work)
                for _ in range(args.pauses):
                    lead, work = bench.one_kill(pause=True)
                    paused_leads.append(lead)
                    paused_works.append(work)
            finally:
                bench.close()
    finally:
        postgres.stop()
    p99 = percentile(leads, 99)
    emit({
        "benchmark": "failover_ha",
        "servers": "2 x orderflow serve on one PostgreSQL, default lease settings",
        "kills": args.kills,
        "lead_p50_s": round(percentile(leads, 50), 3),
        "lead_p99_s": round(p99, 3),
        "lead_max_s": round(max(leads), 3),
        "work_p50_s": round(percentile(works, 50), 3),
        "work_p99_s": round(percentile(works, 99), 3),
        "work_max_s": round(max(works), 3),
        "bound_s": BOUND,
        "within_bound": p99 <= BOUND,
        "leads_s": [round(x, 3) for x in leads],
        **_figures("sigstop", paused_leads, paused_works),
    })
    print(json.dumps({"note": "lead: SIGKILL (or SIGSTOP) -> the standby's /healthz 200; "
                              "work: -> the first step started on the new leader"}),
          file=sys.stderr)
    return 0 if p99 <= BOUND else 1


def _figures(kind: str, leads: list[float], works: list[float]) -> dict:
    if not leads:
        return {}
    return {f"{kind}_pauses": len(leads),
            f"{kind}_lead_p50_s": round(percentile(leads, 50), 3),
            f"{kind}_lead_p99_s": round(percentile(leads, 99), 3),
            f"{kind}_work_p50_s": round(percentile(works, 50), 3),
            f"{kind}_work_p99_s": round(percentile(works, 99), 3)}


if __name__ == "__main__":
    sys.exit(main())
