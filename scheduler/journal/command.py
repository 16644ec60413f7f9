"""`orderflow prune`: delete finished orders older than an age from a journal, once.

A journal that a running server holds is pruned beside it: SQLite through a second
connection (one writer at a time; the server's writer waits for each short chunk), PostgreSQL
through its own connections (row locks keep the two apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .location import parse_location, prune_location
from .retention import duration_arg
from .schema import StoreError
from .sqlite import DEFAULT_DB

HELP = "delete finished orders older than an age from the journal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=duration_arg, required=True, metavar="AGE",
                        help="for example 7d, 12h or 30m")
    parser.add_argument("--db", default=os.environ.get("ORDERFLOW_DB", DEFAULT_DB),
                        metavar="PATH|URL",
                        help="journal file, or a postgresql:// URL; $ORDERFLOW_DB if set")


def run(args: argparse.Namespace) -> int:
    try:
        location = parse_location(args.db)
        removed, how = prune_location(location, time.time() - args.older_than)
    except StoreError as exc:
        print(f"orderflow prune: error: {exc}", file=sys.stderr)
        return 2
    print(f"removed {removed['orders']} finished orders and {removed['events']} events "
          f"from {location.name}{how}")
    return 0
