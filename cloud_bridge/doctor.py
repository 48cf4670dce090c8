"""``cloud-bridge doctor``: check the bridge's configuration and surroundings; say what to fix.

Checks: config loads; broker password credential; TLS files and their expiry; broker reachable,
TLS handshake, login; clock; asset registry and fault-action table; each desk's credentials and
URL; the outbox (free disk and integrity for SQLite, a login for PostgreSQL). Exit status 1 when
any check fails.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Mapping
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


_PROBES: dict[DeskKind, tuple[str, Callable[[DeskSettings], dict[str, str | int]]]] = {
    # Authenticated, read-only, one row at most: what the adapter itself will need to work.
    DeskKind.ZENDESK: ("/api/v2/tickets.json", lambda d: {"per_page": 1}),
    DeskKind.SERVICENOW: ("/api/now/table/{table}", lambda d: {"sysparm_limit": 1, "sysparm_fields": "sys_id"}),
    DeskKind.JSM: ("/rest/api/3/search/jql", lambda d: {"jql": "labels = pdm-edge", "maxResults": 1, "fields": "key"}),
}
"""Read-only call per desk kind. PagerDuty's Events API v2 and a webhook receiver have none: for
them the probe only proves the endpoint answers over verified TLS (any HTTP status)."""


def _desk_for_doctor(desk: DeskSettings, sources: Mapping[str, Path]) -> DeskSettings:
    update = {name: resolve_credential(path, UNIT, sources) for name, path in
              (("token_file", desk.token_file), ("hmac_secret_file", desk.hmac_secret_file)) if path is not None}
    return desk.model_copy(update=update)


def probe_desk(name: str, desk: DeskSettings, *, timeout_s: float,
               sources: Mapping[str, Path] | None = None) -> CheckResult:
    """Contact the desk: an authenticated read-only request where the API has one, else a TLS reach.

    Args:
        name: the desk's name in ``[desks.<name>]``.
        desk: its settings.
        timeout_s: bound of the request.
        sources: credential sources of the installed unit (doctor from a shell).
    """
    import httpx

    from cloud_bridge.desks import make_adapter

    label = f"desk.{name}.api"
    try:
        adapter = make_adapter(name, _desk_for_doctor(desk, sources or {}))
    except OSError as exc:
        return fail(label, f"cannot read the desk's credential: {exc.strerror or exc}",
                    f"fix [desks.{name}] token_file / hmac_secret_file")
    probe = _PROBES.get(desk.kind)
    path, params = (probe[0].format(table=desk.table), probe[1](desk)) if probe else (desk.path, {})
    method = "GET" if probe else "HEAD"
    try:
        with adapter.client as client:
            response = client.request(method, path, params=params, timeout=timeout_s)
    except httpx.ConnectError as exc:
        reason = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
            return fail(label, f"TLS certificate of {desk.base_url} is not trusted: {reason[:160]}",
                        "a configuration problem, not an outage: fix base_url, or install the desk's CA in the "
                        "system store (update-ca-certificates); never disable verification")
        return fail(label, f"cannot connect to {desk.base_url}: {reason[:160]}",
                    "check DNS, the firewall and base_url")
    except httpx.HTTPError as exc:
        return fail(label, f"{method} {path} failed: {type(exc).__name__}: {str(exc)[:160]}",
                    f"check that {desk.base_url} is up; [desks.{name}] timeout_s is {desk.timeout_s:g}s")
    status = response.status_code
    where = f"{method} {desk.base_url.rstrip('/')}{path} answered {status}"
    if not probe:
        return ok(label, f"{where} over verified TLS (no read-only call in the {desk.kind.value} API: "
                  "credentials are checked by the first delivery)")
    if status in (401, 403):
        return fail(label, f"{where}: the desk refused the credentials",
                    f"renew the API token in [desks.{name}] token_file, check username and the account's rights")
    if status == 404:
        return fail(label, f"{where}: no such API at this address",
                    f"check [desks.{name}] base_url (and table / service_desk_id)")
    if status >= 400:
        return warn(label, f"{where}", "the desk is reachable but unhealthy; see its status page")
    return ok(label, f"{where}: authenticated, read access works")


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
