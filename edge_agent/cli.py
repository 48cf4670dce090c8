"""Command line of the edge agent: ``edge-agent [--config FILE] {run,check-config}``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from edge_agent import doctor, install
from edge_agent.config import AgentSettings
from pdm_common import __version__
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.settings import load_settings, resolve_config_path
from pdm_common.systemd import Notifier

__all__ = ["main"]

_log = get_logger(__name__)

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _load(args: argparse.Namespace) -> AgentSettings:
    return load_settings(AgentSettings, resolve_config_path(args.config))


def _cmd_run(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    settings = load_settings(AgentSettings, path)
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    from edge_agent.app import EdgeAgent  # paho and the detector load only when the agent runs

    with Notifier() as notifier:
        agent = EdgeAgent(settings, notifier=notifier, reload_source=lambda: load_settings(AgentSettings, path))

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
    settings = _load(args)
    print(f"configuration OK: gateway={settings.gateway} site={settings.site} broker={settings.mqtt.host}:"
          f"{settings.mqtt.port}")
    return 0


def _register_core(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.set_defaults(func=_cmd_check_config)


REGISTRARS: list[Registrar] = [_register_core, doctor.add_parser, install.add_parser]
"""Each registrar adds its sub-commands."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="pdm-edge gateway agent: validates sensor telemetry, learns each asset's normal "
        "behaviour and publishes explained alerts before a machine fails.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: $PDM_CONFIG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
