"""Command-line conventions shared by ``edge-agent`` and ``cloud-bridge``.

* ``--config FILE`` is accepted before or after the sub-command (``edge-agent --config F run`` and
  ``edge-agent run --config F``); without it, ``PDM_CONFIG``, else ``/etc/pdm-edge/<service>.toml``.
* Exit status (sysexits.h for usage): :data:`EXIT_OK` 0, :data:`EXIT_FAILURE` 1 (a check failed, a
  runtime error), :data:`EXIT_CONFIG` 2 (the configuration cannot run: the message names the field
  and the fix; systemd does not restart it, ``RestartPreventExitStatus=2``), :data:`EXIT_USAGE` 64
  (unknown option or sub-command, missing argument).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from pdm_common.settings import ConfigLocation, locate_config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ServiceParser",
    "add_config_option",
    "config_location",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_USAGE = 64
"""EX_USAGE of sysexits.h: the command was used incorrectly."""


class ServiceParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with :data:`EXIT_USAGE`, not argparse's 2.

    Sub-parsers made by ``add_subparsers`` inherit the class, so every sub-command behaves alike.
    """

    def error(self, message: str) -> NoReturn:
        """Print the usage and the problem, exit 64 (2 is reserved for configuration errors)."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_config_option(parser: argparse.ArgumentParser, *, service: str, top_level: bool) -> None:
    """Add ``--config``; on sub-commands it defaults to "not given" so it never hides the global one."""
    parser.add_argument(
        "--config", metavar="FILE", type=Path,
        default=None if top_level else argparse.SUPPRESS,
        help=f"TOML config file (default: $PDM_CONFIG, else /etc/pdm-edge/{service}.toml)",
    )


def config_location(args: argparse.Namespace, service: str) -> ConfigLocation:
    """Where ``args`` say the config is (see :func:`~pdm_common.settings.locate_config`)."""
    return locate_config(getattr(args, "config", None), service=service)
