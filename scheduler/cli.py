"""The `orderflow` command line: finds its subcommands and runs the one asked for.

Each subcommand lives in the room it belongs to (`serve` in the web layer, `worker` in the
remote worker client, ...) and is registered in pyproject.toml under the entry-point group
`orderflow.commands`, as Flask and pytest find their plugins. So this module imports none of
them: `orderflow worker` loads only the worker client, never Flask, and the engine package
never imports the web layer.

A command module offers `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from types import ModuleType

GROUP = "orderflow.commands"
VERSION_FLAG = "--version"


def installed_version() -> str:
    """orderflow's version as installed (its package metadata), or a note that it is not."""
    try:
        return version("orderflow")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _commands() -> dict[str, object]:
    return {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name)}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, with `only`, just enough of it to run that command."""
    parser = argparse.ArgumentParser(
        prog="orderflow", description="Fault-tolerant order processing"
    )
    parser.add_argument(VERSION_FLAG, action="version",
                        version=f"orderflow {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = _commands()
    if not commands:
        parser.error(f"no commands are registered (is orderflow installed? {GROUP} is empty)")
    for name, ep in commands.items():
        if only is not None and name != only:
            continue
        module: ModuleType = ep.load()
        command = sub.add_parser(
            name, help=module.HELP, description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Load only the command that was asked for: `orderflow worker` must not pay for (or
    # import) the web server; `--version` loads none. Help and mistakes get the whole list.
    only = argv[0] if argv and (argv[0] in _commands() or argv[0] == VERSION_FLAG) else None
    args = build_parser(only).parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
