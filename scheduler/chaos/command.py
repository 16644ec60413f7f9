"""`orderflow chaos`: its flags; the run itself is driver.py."""

from __future__ import annotations

import argparse
import os

from .settings import ChaosSettings

DEFAULTS = ChaosSettings()

HELP = "inject faults under load, then check the journal for lost or doubled work"


def add_arguments(chaos: argparse.ArgumentParser) -> None:
    chaos.add_argument("--duration", type=float, default=DEFAULTS.duration,
                       help="seconds of faults")
    chaos.add_argument("--seed", type=int, default=DEFAULTS.seed)
    chaos.add_argument("--server", default=None, metavar="URL",
                       help="drive this server instead of starting one (no restarts)")
    chaos.add_argument("--db", default=None, metavar="PATH|URL",
                       help="journal to check, a file or a postgresql:// URL (required with "
                       "--server)")
    chaos.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"))
    chaos.add_argument("--rate", type=float, default=DEFAULTS.rate, help="orders per second")
    chaos.add_argument("--remote-workers", type=int, default=DEFAULTS.remote_workers, metavar="N",
                       help="`orderflow worker` processes of the driver's own, which outlive "
                       "server restarts and are stalled (SIGSTOP/SIGCONT) and killed; 0: none")
    chaos.add_argument("--restart-every", type=float, default=DEFAULTS.restart_every, metavar="S",
                       help="mean seconds between SIGKILLs of the whole server, each followed "
                       "by a restart on the same database and port (seeded plan)")
    chaos.add_argument("--stall-every", type=float, default=DEFAULTS.long_stall_every, metavar="S",
                       help="mean seconds between long stalls: a remote worker SIGSTOPped "
                       "until the server declares it dead, then SIGCONT; 0: none (short "
                       "stalls, below the heartbeat timeout, come with the small faults)")
    chaos.add_argument("--no-restart", action="store_true",
                       help="never SIGKILL and restart the server")
    chaos.add_argument("--ha", action="store_true",
                       help="run two servers on one PostgreSQL database (--db postgresql://...) "
                       "and kill the leader at each planned restart instead (SIGKILL, or "
                       "SIGSTOP past its lease): the standby must take over; the workers and "
                       "the orders follow the leader")
    chaos.add_argument("--freeze-every", type=float, default=DEFAULTS.freeze_every,
                       metavar="S",
                       help="with --ha and PostgreSQL on this machine: mean seconds between "
                       "freezes of the database (SIGSTOP of its processes for 3 s, then 7 s, "
                       "in turn, then SIGCONT); 0: none")
    chaos.add_argument("--report", default=None, metavar="FILE", help="also write JSON here")


def run(args: argparse.Namespace) -> int:
    from .driver import main  # requests and the harness load only for a real run

    return main(args)
