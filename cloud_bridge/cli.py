"""``cloud-bridge``: run the bridge, or inspect and repair its outbox.

    cloud-bridge run [--config FILE]                       (until SIGTERM; SIGHUP reloads the config)
    cloud-bridge check-config [--config FILE]              (validate the config and every file it names)
    cloud-bridge doctor [--offline]                        (check config and surroundings; print fixes)
    cloud-bridge outbox list [--dead | --refused] [--limit N]
    cloud-bridge outbox retry [ID ...]                     (dead letters back into the queue; all without IDs)
    cloud-bridge outbox purge [ID ...]                     (delete dead letters; all without IDs)

``--config`` goes before or after the sub-command; without it ``PDM_CONFIG``, else
``/etc/pdm-edge/cloud-bridge.toml``. Exit status: 0 ok, 1 failure, 2 configuration error (names the
field and the fix), 64 usage error (:mod:`pdm_common.cli`).

Other subcommands plug in through :data:`SUBCOMMANDS` (a list of ``add_parser(subparsers)`` registrars).

``run`` under systemd (``Type=notify``, docs/operations.md): ``READY=1`` once connected to the broker,
``WATCHDOG=1`` only while the MQTT network thread and the delivery pool are live, a ``STATUS=`` line
with the queue, ``RELOADING=1`` … ``READY=1`` around a SIGHUP reload, ``STOPPING=1`` on SIGTERM, then a
drain bounded by ``delivery.shutdown_grace_s`` and exit 0. Metrics are served when ``[metrics] enabled``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cloud_bridge import doctor
from cloud_bridge.config import BridgeSettings
from cloud_bridge.errors import BridgeError, OutboxError, RegistryError
from pdm_common import __version__
from pdm_common.cli import EXIT_CONFIG, EXIT_FAILURE, ServiceParser, add_config_option, config_location
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.metrics import start_metrics_server
from pdm_common.preflight import preflight, raise_problems
from pdm_common.settings import ConfigLocation, load_settings
from pdm_common.systemd import Notifier, Watchdog

if TYPE_CHECKING:
    from cloud_bridge.app import BridgeApp

__all__ = ["SERVICE", "SUBCOMMANDS", "bridge_preflight", "main"]

SERVICE = "cloud-bridge"

_log = get_logger(__name__)

Registrar = Callable[[Any], None]
"""Adds one subcommand to the ``argparse`` sub-parsers; it sets ``func(args) -> int`` as its default."""


def _settings(args: argparse.Namespace) -> BridgeSettings:
    return load_settings(BridgeSettings, config_location(args, SERVICE).path)


def bridge_preflight(settings: BridgeSettings, config: Path | None, *, for_unit: bool, timeout_s: float = 5.0) -> None:
    """Raise :class:`ConfigError` naming every file, certificate, directory or login ``run`` would trip on.

    Args:
        settings: the loaded settings.
        config: the file they came from (for the message).
        for_unit: read ``/run/credentials/…`` paths from the installed unit's ``LoadCredential=``
            sources (``check-config`` from a shell); ``run`` reads them as configured.
        timeout_s: bound of the PostgreSQL login (postgres backend only).

    Raises:
        ConfigError: a file is missing or unreadable, a certificate does not load, the outbox
            directory is not writable, or PostgreSQL refused the user or has no such database.
        OutboxError: PostgreSQL cannot be reached (may pass: systemd restarts the service).
    """
    resolve = doctor.credential_map_of(settings) if for_unit else None
    raise_problems(preflight(settings, directories=doctor.directories(settings), resolve=resolve), config)
    if settings.outbox.backend == "postgres" and not for_unit:
        problem = doctor.probe_postgres(settings.outbox.resolved_dsn() or "", timeout_s=timeout_s)
        if problem is not None and problem.part != "host":
            raise ConfigError(f"[outbox] PostgreSQL: {problem.detail}. Fix: {problem.fix}.")
        if problem is not None:
            raise OutboxError(f"{problem.detail}; {problem.fix} (systemd retries)")


LOOP_PERIOD_S = 1.0
"""Longest the service loop sleeps (shortened to half the watchdog interval): bounds how late a
signal is acted on and keeps WATCHDOG=1 at sd_watchdog_enabled(3)'s recommended rate."""

REFRESH_PERIOD_S = 5.0
"""How often the outbox gauges (one database query), circuit gauges and STATUS line are refreshed:
well inside a 15-60 s Prometheus scrape interval, negligible load on the outbox."""


class _Signals:
    """SIGTERM/SIGINT ask to stop, SIGHUP to reload; the handlers only set flags and wake the loop."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        _log.info("bridge.signal", signal=signal.Signals(signum).name)
        (self.reload if signum == signal.SIGHUP else self.stop).set()
        self.wake.set()


def _run(args: argparse.Namespace) -> int:
    from cloud_bridge.app import BridgeApp

    location = config_location(args, SERVICE)
    path = location.path
    settings = load_settings(BridgeSettings, path)
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    _log.info("config.loaded", path=str(path), origin=location.origin)
    bridge_preflight(settings, path, for_unit=False)
    signals = _Signals()
    with ExitStack() as stack:
        app = BridgeApp(settings)
        stack.callback(app.stop)  # last out: drains in-flight deliveries within shutdown_grace_s
        if settings.metrics.enabled:
            server = start_metrics_server(app.metrics.registry, host=settings.metrics.host,
                                          port=settings.metrics.port)
            stack.callback(server.close)
        notifier = stack.enter_context(Notifier())
        app.start()
        _serve(app, notifier, signals, path)
        notifier.stopping("draining in-flight deliveries")
    return 0


def _serve(app: BridgeApp, notifier: Notifier, signals: _Signals, path: Path | None) -> None:
    """The service loop: readiness, watchdog, gauges and STATUS, reloads; returns on SIGTERM/SIGINT."""
    watchdog = Watchdog(notifier, app.liveness())
    interval_s = notifier.watchdog_interval_s
    period_s = min(LOOP_PERIOD_S, interval_s / 2) if interval_s is not None else LOOP_PERIOD_S
    ready = False
    status = ""
    next_refresh = time.monotonic()
    while not signals.stop.is_set():
        if signals.reload.is_set():
            signals.reload.clear()
            _reload(app, path, notifier if ready else None)
            status, next_refresh = "", time.monotonic()  # READY replaced the STATUS line: send it again
        if not ready and app.mqtt.is_connected:
            ready = True
            notifier.ready("connected; delivering")
            _log.info("bridge.ready", desks=sorted(app.adapters))
        if time.monotonic() >= next_refresh:
            next_refresh = time.monotonic() + REFRESH_PERIOD_S
            status = _refresh(app, notifier, watchdog, status)
        watchdog.beat(healthy=True)
        signals.wake.wait(period_s)
        signals.wake.clear()
    _log.info("bridge.stopping", grace_s=app.settings.delivery.shutdown_grace_s)


def _refresh(app: BridgeApp, notifier: Notifier, watchdog: Watchdog, last: str) -> str:
    """Refresh the gauges and send STATUS when its text changed; returns the text sent last."""
    try:
        stats = app.refresh_gauges()
    except OutboxError as exc:
        _log.error("outbox.stats_failed", error=str(exc), action="check the outbox database")
        return last
    state = ("unhealthy: " + "; ".join(watchdog.problems) if watchdog.problems
             else "running" if app.mqtt.is_connected else "connecting to the broker")
    text = (f"{state}; queued={stats.depth} oldest={stats.oldest_age_s:.0f}s in_flight={app.dispatcher.inflight} "
            f"dead_letters={stats.dead_letters}")
    if text != last:
        notifier.status(text)
    return text


def _reload(app: BridgeApp, path: Path | None, notifier: Notifier | None) -> None:
    """SIGHUP: load the file again and apply what is safe; a broken file keeps the running settings.

    ``notifier`` is None before READY=1 (a reload must not announce readiness early).
    """
    if notifier is not None:
        notifier.reloading("reloading the configuration")
    try:
        app.reload(load_settings(BridgeSettings, path))
    except (ConfigError, RegistryError) as exc:
        _log.error("config.reload_failed", path=str(path), error=str(exc)[:2000],
                   action="fix the file and reload again; the running configuration stays in force")
    if notifier is not None:
        notifier.ready("configuration reloaded")


def _outbox(args: argparse.Namespace) -> int:
    from cloud_bridge.app import open_outbox

    outbox = open_outbox(_settings(args))
    try:
        if args.action == "list":
            if args.refused:
                for r in outbox.refused(args.limit):
                    print(f"{r.id}\t{r.topic}\t{datetime.fromtimestamp(r.received_at, UTC).isoformat()}\t"
                          f"{r.reason}\t{r.detail}")
            elif args.dead:
                for d in outbox.dead_letters(args.limit):
                    print(f"{d.id}\t{d.alert_id}\t{d.event_seq}\t{d.event_type}\t{d.desk}\tattempts={d.attempts}\t"
                          f"{datetime.fromtimestamp(d.failed_at, UTC).isoformat()}\t{d.reason}")
            else:
                for e in outbox.pending(args.limit):
                    print(f"{e[0]}\t{e[1]}\t{e[2]}\t{e[3]}\t{e[4]}\tattempts={e[5]}\t"
                          f"next={datetime.fromtimestamp(e[6], UTC).isoformat()}\t{e[7] or ''}")
            stats = outbox.stats(time.time())
            print(f"# queued={stats.depth} oldest_age_s={stats.oldest_age_s:.1f} dead_letters={stats.dead_letters} "
                  f"refused={stats.refused}")
        elif args.action == "retry":
            print(f"requeued {outbox.retry_dead(args.ids or None, now=time.time())} dead letter(s)")
        else:
            print(f"purged {outbox.purge_dead(args.ids or None)} dead letter(s)")
    finally:
        outbox.close()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    location: ConfigLocation = config_location(args, SERVICE)
    settings = load_settings(BridgeSettings, location.path)
    bridge_preflight(settings, location.path, for_unit=True)
    print(f"configuration OK ({location.path}, from {location.origin}): {len(settings.desks)} desks "
          f"({', '.join(sorted(settings.desks))}), broker={settings.mqtt.host}:{settings.mqtt.port}, "
          f"outbox={settings.outbox.backend}")
    return 0


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="consume alerts and deliver tickets until SIGTERM")
    p.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate the configuration and the files it names, then exit")
    check.set_defaults(func=_check_config)


def _add_outbox(sub: Any) -> None:
    p = sub.add_parser("outbox", help="list, retry or purge queued and dead-lettered events")
    p.add_argument("action", choices=["list", "retry", "purge"])
    p.add_argument("ids", nargs="*", type=int, help="dead-letter ids for retry/purge (default: all)")
    p.add_argument("--dead", action="store_true", help="list: show dead letters instead of the queue")
    p.add_argument("--refused", action="store_true",
                   help="list: show the messages intake refused (contract, signature, site), with the reason")
    p.add_argument("--limit", type=int, default=100, help="list: at most this many rows")
    p.set_defaults(func=_outbox)


SUBCOMMANDS: list[Registrar] = [_add_run, _add_outbox, doctor.add_parser]
"""Subcommand registrars, in ``--help`` order."""


def _parser() -> argparse.ArgumentParser:
    parser = ServiceParser(prog="cloud-bridge", description="pdm-edge cloud bridge: alerts to service desks",
                           epilog="exit status: 0 ok, 1 failure, 2 configuration error, 64 usage error")
    parser.add_argument("--version", action="version", version=f"cloud-bridge {__version__}")
    add_config_option(parser, service=SERVICE, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    for command in sub.choices.values():
        add_config_option(command, service=SERVICE, top_level=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-bridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"cloud-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as exc:
        print(f"cloud-bridge: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
