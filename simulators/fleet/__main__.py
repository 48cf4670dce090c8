"""``python -m simulators.fleet …``: the ``fleet`` sub-command on its own."""

from __future__ import annotations

import argparse
import sys

from simulators.fleet.cli import add_fleet_parser


def main() -> int:
    """Parse ``fleet`` arguments and run it."""
    parser = argparse.ArgumentParser(prog="python -m simulators.fleet")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fleet_parser(sub)
    args = parser.parse_args(["fleet", *sys.argv[1:]])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
