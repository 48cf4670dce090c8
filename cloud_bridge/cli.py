"""``cloud-bridge``: run the bridge, or inspect and repair its outbox.

    cloud-bridge [--config FILE] run
    cloud-bridge [--config FILE] outbox list [--dead] [--limit N]
    cloud-bridge [--config FILE] outbox retry [ID ...]     (dead letters back into the queue; all without IDs)
    cloud-bridge [--config FILE] outbox purge [ID ...]     (delete dead letters; all without IDs)

Other subcommands plug in through :data:`SUBCOMMANDS` (a list of ``add_parser(subparsers)`` registrars).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from cloud_bridge.config import BridgeSettings
from cloud_bridge.errors import BridgeError
from pdm_common import __version__
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.settings import load_settings, resolve_config_path

__all__ = ["SUBCOMMANDS", "main"]

_log = get_logger(__name__)

Registrar = Callable[[Any], None]
"""Adds one subcommand to the ``argparse`` sub-parsers; it sets ``func(args) -> int`` as its default."""


def _settings(args: argparse.Namespace) -> BridgeSettings:
    return load_settings(BridgeSettings, resolve_config_path(args.config))


def _run(args: argparse.Namespace) -> int:
    from cloud_bridge.app import BridgeApp

    settings = _settings(args)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    app = BridgeApp(settings)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("bridge.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    app.start()
    stop.wait()
    app.stop()
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from cloud_bridge.app import open_outbox

    outbox = open_outbox(_settings(args))
    try:
        if args.action == "list":
            if args.dead:
                for d in outbox.dead_letters(args.limit):
                    print(f"{d.id}\t{d.alert_id}\t{d.event_seq}\t{d.event_type}\t{d.desk}\tattempts={d.attempts}\t"
                          f"{datetime.fromtimestamp(d.failed_at, UTC).isoformat()}\t{d.reason}")
            else:
                for e in outbox.pending(args.limit):
                    print(f"{e[0]}\t{e[1]}\t{e[2]}\t{e[3]}\t{e[4]}\tattempts={e[5]}\t"
                          f"next={datetime.fromtimestamp(e[6], UTC).isoformat()}\t{e[7] or ''}")
            stats = outbox.stats(time.time())
            print(f"# queued={stats.depth} oldest_age_s={stats.oldest_age_s:.1f} dead_letters={stats.dead_letters}")
        elif args.action == "retry":
            print(f"requeued {outbox.retry_dead(args.ids or None, now=time.time())} dead letter(s)")
        else:
            print(f"purged {outbox.purge_dead(args.ids or None)} dead letter(s)")
    finally:
        outbox.close()
    return 0


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="consume alerts and deliver tickets until SIGTERM")
    p.set_defaults(func=_run)


def _add_outbox(sub: Any) -> None:
    p = sub.add_parser("outbox", help="list, retry or purge queued and dead-lettered events")
    p.add_argument("action", choices=["list", "retry", "purge"])
    p.add_argument("ids", nargs="*", type=int, help="dead-letter ids for retry/purge (default: all)")
    p.add_argument("--dead", action="store_true", help="list: show dead letters instead of the queue")
    p.add_argument("--limit", type=int, default=100, help="list: at most this many rows")
    p.set_defaults(func=_outbox)


SUBCOMMANDS: list[Registrar] = [_add_run, _add_outbox]
"""Subcommand registrars. The deployment engineer adds ``cloud_bridge.doctor.add_parser`` here."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloud-bridge", description="pdm-edge cloud bridge: alerts to service desks")
    parser.add_argument("--version", action="version", version=f"cloud-bridge {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $PDM_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-bridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"cloud-bridge: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"cloud-bridge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
