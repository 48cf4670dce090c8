"""Command line of the edge agent: ``edge-agent {run,check-config,doctor,install,uninstall} [--config FILE]``.

Exit status: 0 ok, 1 failure, 2 configuration error (names the field and the fix), 64 usage error
(:mod:`pdm_common.cli`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from edge_agent import doctor, install
from edge_agent.config import AgentSettings
from pdm_common import __version__
from pdm_common.cli import EXIT_CONFIG, ServiceParser, add_config_option, config_location
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.preflight import preflight, raise_problems
from pdm_common.settings import ConfigLocation, load_settings
from pdm_common.systemd import Notifier

__all__ = ["SERVICE", "agent_preflight", "build_parser", "main"]

SERVICE = "edge-agent"

_log = get_logger(__name__)

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def agent_preflight(settings: AgentSettings, config: Path | None, *, for_unit: bool) -> None:
    """Raise :class:`ConfigError` naming every file, certificate or directory ``run`` would trip on.

    Args:
        settings: the loaded settings.
        config: the file they came from (for the message).
        for_unit: read ``/run/credentials/…`` paths from the installed unit's ``LoadCredential=``
            sources (``check-config`` from a shell); ``run`` reads them as configured.
    """
    resolve = doctor.credential_map_of(settings) if for_unit else None
    raise_problems(preflight(settings, directories=doctor.directories(settings), resolve=resolve), config)


def _load(location: ConfigLocation) -> AgentSettings:
    return load_settings(AgentSettings, location.path)


def _cmd_run(args: argparse.Namespace) -> int:
    location = config_location(args, SERVICE)
    settings = _load(location)
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    _log.info("config.loaded", path=str(location.path), origin=location.origin)
    agent_preflight(settings, location.path, for_unit=False)
    from edge_agent.app import EdgeAgent  # paho and the detector load only when the agent runs

    with Notifier() as notifier:
        agent = EdgeAgent(settings, notifier=notifier, reload_source=lambda: _load(location))

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            _log.info("agent.signal", signal=signal.Signals(signum).name)
            if signum == signal.SIGHUP:
                agent.request_reload()
            else:
                agent.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        agent.start()
        agent.run()
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    location = config_location(args, SERVICE)
    settings = _load(location)
    agent_preflight(settings, location.path, for_unit=True)
    print(f"configuration OK ({location.path}, from {location.origin}): gateway={settings.gateway} "
          f"site={settings.site} broker={settings.mqtt.host}:{settings.mqtt.port}")
    return 0


def _register_core(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="validate the configuration and the files it names, then exit")
    check.set_defaults(func=_cmd_check_config)


REGISTRARS: list[Registrar] = [_register_core, doctor.add_parser, install.add_parser]
"""Each registrar adds its sub-commands."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser: argparse.ArgumentParser = ServiceParser(
        prog="edge-agent",
        description="pdm-edge gateway agent: validates sensor telemetry, learns each asset's normal "
        "behaviour and publishes explained alerts before a machine fails.",
        epilog="exit status: 0 ok, 1 failure, 2 configuration error, 64 usage error",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    add_config_option(parser, service=SERVICE, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(sub)
    for command in sub.choices.values():
        add_config_option(command, service=SERVICE, top_level=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
