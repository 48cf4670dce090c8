"""Command line of the simulators: ``pdm-sim {fleet,desk}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pdm_common import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser with the fleet and desk sub-commands."""
    from simulators.desk.cli import add_desk_parser
    from simulators.fleet.cli import add_fleet_parser

    parser = argparse.ArgumentParser(
        prog="pdm-sim",
        description="Simulated heat pumps and pumps with injected faults and ground truth (fleet), "
        "and a service-desk simulator with injectable faults (desk).",
    )
    parser.add_argument("--version", action="version", version=f"pdm-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_fleet_parser(sub)
    add_desk_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdm-sim`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
