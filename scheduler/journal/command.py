"""`orderflow prune`: delete finished orders older than an age from a journal, once."""

from __future__ import annotations

import argparse
import sys
import time

from .retention import duration_arg
from .schema import StoreError
from .sqlite import DEFAULT_DB, SQLiteJournal

HELP = "delete finished orders older than an age from the journal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=duration_arg, required=True, metavar="AGE",
                        help="for example 7d, 12h or 30m")
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help="journal file")


def run(args: argparse.Namespace) -> int:
    try:
        journal = SQLiteJournal(args.db)
    except StoreError as exc:
        print(f"orderflow prune: error: {exc}", file=sys.stderr)
        return 2
    try:
        removed = journal.prune(time.time() - args.older_than)
    finally:
        journal.close()
    print(f"removed {removed['orders']} finished orders and {removed['events']} events "
          f"from {args.db}")
    return 0
