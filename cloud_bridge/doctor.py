"""``cloud-bridge doctor``: check the bridge's configuration and surroundings; say what to fix.

Checks: config loads; broker password credential; TLS files and their expiry; broker reachable,
TLS handshake, login; clock; asset registry and fault-action table; each desk's credentials and
URL; the outbox (free disk and integrity for SQLite, a login for PostgreSQL). Exit status 1 when
any check fails.
"""

from __future__ import annotations

import argparse
import tomllib
from datetime import datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pdm_common
from cloud_bridge.app import mqtt_client_id
from cloud_bridge.assets import parse_registry
from cloud_bridge.config import BridgeSettings, DeskKind, DeskSettings, OutboxSettings
from cloud_bridge.errors import RegistryError
from cloud_bridge.registry import load_fault_actions
from pdm_common.doctor import (
    Check,
    CheckResult,
    add_doctor_command,
    check_broker,
    check_certificates,
    check_clock_at,
    check_disk_at,
    check_secret_file,
    check_sqlite,
    fail,
    mqtt_for_doctor,
    ok,
    resolve_credential,
    unit_credentials,
    warn,
)

__all__ = ["add_parser", "bridge_checks", "check_desk"]

UNIT = "pdm-cloud-bridge.service"
UNIT_FILE = Path("/etc/systemd/system") / UNIT
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def check_desk(name: str, desk: DeskSettings, sources: dict[str, Path]) -> list[CheckResult]:
    """A desk's secrets are in credential files (not the config) and its URL is encrypted."""
    label = f"desk.{name}"
    results: list[CheckResult] = []
    secrets = [("token", desk.token, desk.token_file), ("hmac_secret", desk.hmac_secret, desk.hmac_secret_file)]
    for field_name, inline, file in secrets:
        if inline is not None:
            results.append(warn(f"{label}.{field_name}", f"{field_name} is written in the config file",
                                f"move it to /etc/pdm/credentials/ and set {field_name}_file (docs/deploy.md)"))
        elif file is not None:
            results.append(check_secret_file(f"{label}.{field_name}", resolve_credential(file, UNIT, sources)))
    if desk.kind is not DeskKind.WEBHOOK and desk.token is None and desk.token_file is None:
        results.append(fail(f"{label}.token", f"{desk.kind.value} desk has no token",
                            f"set [desks.{name}] token_file to its API token credential"))
    if desk.kind is DeskKind.WEBHOOK and desk.hmac_secret is None and desk.hmac_secret_file is None:
        results.append(warn(f"{label}.hmac_secret", "webhook requests are not signed",
                            f"set [desks.{name}] hmac_secret_file so the receiver can verify X-PDM-Signature"))
    url = urlsplit(desk.base_url)
    if url.scheme != "https" and url.hostname not in _LOOPBACK_HOSTS:
        results.append(warn(f"{label}.url", f"{desk.base_url} is not https: tickets and tokens travel in clear",
                            "use the desk's https:// address"))
    elif not url.hostname:
        results.append(fail(f"{label}.url", f"{desk.base_url!r} has no host", "set base_url to https://host"))
    else:
        results.append(ok(f"{label}.url", desk.base_url))
    return results


def _check_registry(path: Path) -> CheckResult:
    try:
        registry = parse_registry(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, RegistryError) as exc:
        return fail("registry", f"{path}: {exc}", "fix registry_path or the file; tickets lack customer details")
    return ok("registry", f"{path}: {len(registry)} assets")


def _check_fault_actions(path: Path) -> CheckResult:
    try:
        load_fault_actions(path)
    except RegistryError as exc:
        return fail("fault_actions", str(exc), "fix fault_actions_path or the file (see config/fault-actions.toml)")
    return ok("fault_actions", f"{path} loaded")


def _check_postgres(outbox: OutboxSettings, sources: dict[str, Path], timeout_s: float) -> CheckResult:
    import psycopg  # the postgres backend's own driver, only needed when that backend is configured

    dsn_file = resolve_credential(outbox.dsn_file, UNIT, sources) if outbox.dsn_file is not None else None
    try:
        dsn = dsn_file.read_text(encoding="utf-8").strip() if dsn_file is not None else outbox.resolved_dsn()
        with psycopg.connect(dsn or "", connect_timeout=max(1, round(timeout_s))) as conn:
            conn.execute("SELECT 1")
    except (OSError, psycopg.Error) as exc:
        return fail("outbox", f"cannot log in to PostgreSQL: {str(exc).splitlines()[0][:200]}",
                    "check [outbox] dsn_file, that PostgreSQL runs, and pg_hba.conf")
    return ok("outbox", "PostgreSQL reachable")


def bridge_checks(settings: BridgeSettings, *, now: datetime, network: bool = True, timeout_s: float = 5.0,
                  unit_file: Path = UNIT_FILE) -> list[tuple[str, Check]]:
    """Every doctor check for ``settings``, in report order.

    Args:
        settings: the loaded bridge settings.
        now: current UTC time (certificate expiry, clock sanity).
        network: also probe the broker and PostgreSQL.
        timeout_s: bound of each network probe.
        unit_file: the installed unit (its LoadCredential= sources map credential paths).
    """
    sources = unit_credentials(unit_file)
    mqtt = mqtt_for_doctor(settings.mqtt, UNIT, sources)
    outbox = settings.outbox
    checks: list[tuple[str, Check]] = []
    if mqtt.username is not None and mqtt.password_file is not None:
        password_file = mqtt.password_file
        checks.append(("credentials", lambda: check_secret_file("credentials.mqtt", password_file)))
    checks += [
        ("tls", lambda: check_certificates(mqtt.tls, now)),
        ("clock", lambda: check_clock_at(now, [Path(pdm_common.__file__), outbox.path])),
        ("registry", lambda: _check_registry(settings.registry_path)),
        ("fault_actions", lambda: _check_fault_actions(settings.fault_actions_path)),
    ]
    desks = sorted(settings.desks.items())
    checks += [(f"desk.{name}", partial(check_desk, name, desk, sources)) for name, desk in desks]
    if outbox.backend == "sqlite":
        checks.append(("disk", lambda: check_disk_at(outbox.path)))
        checks.append(("outbox", lambda: check_sqlite("outbox", outbox.path)))
    elif network:
        checks.append(("outbox", lambda: _check_postgres(outbox, sources, timeout_s)))
    if network:
        client_id = f"{mqtt_client_id(settings)}-doctor"
        checks.append(("broker", lambda: check_broker(mqtt, now, client_id=client_id, timeout_s=timeout_s)))
    return checks


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor`` on the ``cloud-bridge`` command line (uses the global ``--config``)."""
    add_doctor_command(
        subparsers,
        model=BridgeSettings,
        checks=lambda s, now, network, timeout_s: bridge_checks(s, now=now, network=network, timeout_s=timeout_s),
        describe=lambda s: f"{len(s.desks)} desks",
        help_text="check config, broker, TLS, desks, clock and outbox; print fixes",
        offline_help="skip the broker and PostgreSQL probes",
        config_fix="fix the file; the message names each bad field",
    )
