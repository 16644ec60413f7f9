"""The `orderflow` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderflow", description="Fault-tolerant order processing")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a console demo: orders flow, a worker dies, work recovers")
    demo.add_argument("--orders", type=int, default=200)
    demo.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from scheduler.demo import run_demo

        return run_demo(orders=args.orders, workers=args.workers)
    return 2


if __name__ == "__main__":
    sys.exit(main())
