"""``cloud-bridge doctor``: check the bridge's configuration and surroundings; say what to fix.

Checks: config loads; broker password credential; TLS files and their expiry; broker reachable,
TLS handshake, login; clock; asset registry and fault-action table; signed alerts (gateways listed,
each gateway's key); each desk's credentials and URL; the outbox (free disk and integrity for SQLite,
a login for PostgreSQL). Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pdm_common
from cloud_bridge.app import mqtt_client_id
from cloud_bridge.assets import parse_registry
from cloud_bridge.config import BridgeSettings, DeskKind, DeskSettings, OutboxSettings
from cloud_bridge.errors import DeskConfigError, PermanentDeliveryError, RegistryError, RetryableDeliveryError
from cloud_bridge.registry import load_fault_actions
from pdm_common.doctor import (
    Check,
    CheckResult,
    add_doctor_command,
    check_broker,
    check_certificates,
    check_clock_at,
    check_disk_at,
    check_files,
    check_secret_file,
    check_sqlite,
    credential_map,
    fail,
    installed_unit,
    mqtt_for_doctor,
    ok,
    resolve_credential,
    unit_credentials,
    warn,
)

__all__ = [
    "PostgresProblem",
    "add_parser",
    "bridge_checks",
    "check_desk",
    "check_signing",
    "credential_map_of",
    "describe_postgres_error",
    "directories",
    "probe_desk",
    "probe_postgres",
]

UNIT = "pdm-cloud-bridge.service"
UNIT_FILE = installed_unit(UNIT)
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def check_desk(name: str, desk: DeskSettings, sources: dict[str, Path]) -> list[CheckResult]:
    """A desk's secrets are in credential files (not the config) and its URL is encrypted."""
    label = f"desk.{name}"
    results: list[CheckResult] = []
    secrets = [("token", desk.token, desk.token_file), ("hmac_secret", desk.hmac_secret, desk.hmac_secret_file)]
    for field_name, inline, file in secrets:
        if inline is not None:
            results.append(warn(f"{label}.{field_name}", f"{field_name} is written in the config file",
                                f"move it to /etc/pdm-edge/credentials/cloud-bridge/ and set {field_name}_file "
                                "(docs/deploy.md, 'Credentials')"))
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


def check_signing(settings: BridgeSettings, sources: Mapping[str, Path]) -> list[CheckResult]:
    """Who may speak for which site: signed alerts required with gateways listed, and each gateway's key.

    Args:
        settings: the bridge settings.
        sources: credential sources of the installed unit (a key in ``/run/credentials/…`` is read there).
    """
    problem = settings.signing_problem()
    if problem is not None:
        return [fail("signing", f"{problem.field} {problem.detail}", problem.fix)]
    results: list[CheckResult] = []
    if not settings.require_signed_alerts:
        results.append(warn("signing", "require_signed_alerts = false: alerts without a signature are accepted from "
                            "anyone who can publish on an alert topic",
                            "list each gateway under [gateways.<gateway>] and set require_signed_alerts = true"))
    for name, gateway in sorted(settings.gateways.items()):
        label = f"gateway.{name}.secret"
        if gateway.secret_file is None:
            results.append(warn(label, "the gateway's signing secret is written in the config file",
                                "move it to /etc/pdm-edge/credentials/cloud-bridge/ and set secret_file"))
        else:
            results.append(check_secret_file(label, resolve_credential(gateway.secret_file, UNIT, sources)))
    if settings.gateways:
        sites = ", ".join(f"{name} -> {g.site}" for name, g in sorted(settings.gateways.items()))
        results.append(ok("signing", f"{len(settings.gateways)} gateway(s) may sign alerts: {sites}"))
    return results


def _desk_for_doctor(desk: DeskSettings, sources: Mapping[str, Path]) -> DeskSettings:
    update = {name: resolve_credential(path, UNIT, sources) for name, path in
              (("token_file", desk.token_file), ("hmac_secret_file", desk.hmac_secret_file)) if path is not None}
    return desk.model_copy(update=update)


def probe_desk(name: str, desk: DeskSettings, *, timeout_s: float,
               sources: Mapping[str, Path] | None = None) -> CheckResult:
    """Contact the desk through its adapter's ``probe()``: an authenticated read-only call where the
    desk's API has one (PagerDuty's Events API and a webhook receiver have none), and say what it found.

    Args:
        name: the desk's name in ``[desks.<name>]``.
        desk: its settings.
        timeout_s: bound of each request.
        sources: credential sources of the installed unit (doctor from a shell).
    """
    from cloud_bridge.desks import make_adapter

    label = f"desk.{name}.api"
    settings = _desk_for_doctor(desk, sources or {}).model_copy(update={"timeout_s": min(desk.timeout_s, timeout_s)})
    try:
        adapter = make_adapter(name, settings)
    except OSError as exc:
        return fail(label, f"cannot read the desk's credential: {exc.strerror or exc}",
                    f"fix [desks.{name}] token_file / hmac_secret_file")
    try:
        found = adapter.probe()
    except DeskConfigError as exc:
        return fail(label, f"{desk.base_url}: {exc.detail}", f"a configuration problem, not an outage: {exc.fix}")
    except PermanentDeliveryError as exc:
        refused = exc.status in (401, 403)
        return fail(label, f"{desk.base_url} {'refused the credentials' if refused else 'refused the call'}: "
                    f"{exc.reason}: {exc.detail[:160]}",
                    f"renew the API token in [desks.{name}] token_file, check username and the account's rights"
                    if refused else f"check [desks.{name}] base_url and the ids it names (table, service_desk_id)")
    except RetryableDeliveryError as exc:
        return fail(label, f"{desk.base_url} did not answer: {exc.reason}: {exc.detail[:160]}",
                    f"check that the desk is up, DNS and the firewall; [desks.{name}] timeout_s is {desk.timeout_s:g}s")
    finally:
        adapter.close()
    return ok(label, found)


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


@dataclass(frozen=True, slots=True)
class PostgresProblem:
    """Why PostgreSQL refused: ``host`` (unreachable: may pass), ``auth`` or ``database`` (configuration)."""

    part: Literal["host", "auth", "database"]
    detail: str
    fix: str


def _dsn_parts(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return {}
    return {k: str(v) for k, v in parts.items() if k in {"host", "hostaddr", "port", "dbname", "user"} and v}


def describe_postgres_error(message: str, dsn: str) -> PostgresProblem:
    """Classify a libpq connection failure by what failed, naming host, user and database (never the password).

    >>> describe_postgres_error('connection failed: ... FATAL:  database "pdm" does not exist',
    ...                         "postgresql://bridge@db:5432/pdm").part
    'database'
    """
    parts = _dsn_parts(dsn)
    host = f"{parts.get('host', parts.get('hostaddr', 'localhost'))}:{parts.get('port', '5432')}"
    user, dbname = parts.get("user", "(default user)"), parts.get("dbname", "(default database)")
    text = message.replace("\n", " ").replace("\t", " ")
    first = " ".join(text.split())[:240]
    if "database" in text and "does not exist" in text:
        return PostgresProblem("database", f"database {dbname} does not exist on {host}: {first}",
                               f"create it (createdb -O {user} {dbname}) or fix dbname in [outbox] dsn_file")
    if any(word in text for word in ("password authentication failed", "role", "pg_hba.conf", "authentication")):
        return PostgresProblem("auth", f"{host} refused user {user}: {first}",
                               "fix the user/password in [outbox] dsn_file, or the server's pg_hba.conf and role")
    return PostgresProblem("host", f"cannot reach PostgreSQL at {host}: {first}",
                           "start PostgreSQL or fix host/port in [outbox] dsn_file; check the firewall")


def probe_postgres(dsn: str, *, timeout_s: float) -> PostgresProblem | None:
    """Log in to PostgreSQL once and run ``SELECT 1``; None when that works."""
    import psycopg  # the postgres backend's own driver, only needed when that backend is configured

    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return describe_postgres_error(str(exc), dsn)
    return None


def _check_postgres(outbox: OutboxSettings, sources: dict[str, Path], timeout_s: float) -> CheckResult:
    dsn_file = resolve_credential(outbox.dsn_file, UNIT, sources) if outbox.dsn_file is not None else None
    try:
        dsn = dsn_file.read_text(encoding="utf-8").strip() if dsn_file is not None else outbox.resolved_dsn()
    except OSError as exc:
        return fail("outbox", f"cannot read [outbox] dsn_file {dsn_file}: {exc.strerror or exc}",
                    "put the DSN in that file (a credential, mode 0600)")
    problem = probe_postgres(dsn or "", timeout_s=timeout_s)
    if problem is not None:
        return fail(f"outbox.{problem.part}", problem.detail, problem.fix)
    parts = _dsn_parts(dsn or "")
    return ok("outbox", f"PostgreSQL {parts.get('host', 'localhost')}:{parts.get('port', '5432')} "
              f"database {parts.get('dbname', '(default)')} as {parts.get('user', '(default user)')}: login works")


def directories(settings: BridgeSettings) -> list[tuple[str, Path]]:
    """Directories the bridge writes: the SQLite outbox's (none for PostgreSQL)."""
    return [("outbox.path", settings.outbox.path.parent)] if settings.outbox.backend == "sqlite" else []


def credential_map_of(settings: BridgeSettings, unit_file: Path = UNIT_FILE) -> dict[Path, Path]:
    """Configured credential paths → the installed unit's ``LoadCredential=`` sources."""
    return credential_map(settings, UNIT, unit_credentials(unit_file))


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
    resolve = credential_map(settings, UNIT, sources)
    checks: list[tuple[str, Check]] = [
        ("files", lambda: check_files(settings, directories=directories(settings), resolve=resolve))]
    if mqtt.username is not None and mqtt.password_file is not None:
        password_file = mqtt.password_file
        checks.append(("credentials", lambda: check_secret_file("credentials.mqtt", password_file)))
    checks += [
        ("tls", lambda: check_certificates(mqtt.tls, now)),
        ("clock", lambda: check_clock_at(now, [Path(pdm_common.__file__), outbox.path])),
        ("registry", lambda: _check_registry(settings.registry_path)),
        ("fault_actions", lambda: _check_fault_actions(settings.fault_actions_path)),
        ("signing", lambda: check_signing(settings, sources)),
    ]
    desks = sorted(settings.desks.items())
    checks += [(f"desk.{name}", partial(check_desk, name, desk, sources)) for name, desk in desks]
    if network:
        checks += [(f"desk.{name}.api", partial(probe_desk, name, desk, timeout_s=timeout_s, sources=sources))
                   for name, desk in desks]
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
        service="cloud-bridge",
        checks=lambda s, now, network, timeout_s: bridge_checks(s, now=now, network=network, timeout_s=timeout_s),
        describe=lambda s: f"{len(s.desks)} desks",
        help_text="check config, broker, TLS, desks, clock and outbox; print fixes",
        offline_help="skip the broker, desk and PostgreSQL probes",
        config_fix="fix the file; the message names each bad field",
    )
