"""``doctor``: named health checks that say what is wrong and what to do about it.

Each check returns a :class:`CheckResult` (name, ok/warn/fail, what was found, how to fix it).
The verdicts are pure functions of facts passed in (``now``, free bytes, file contents); the few
probes that must touch the world (TCP/TLS handshake, MQTT login, SQLite ``quick_check``) are
small and translate every error into a result instead of raising.

Both services build their own list (``edge_agent.doctor``, ``cloud_bridge.doctor``), run it with
:func:`run_checks`, print :func:`render` and exit with :func:`exit_code`. The agent also puts
:func:`health_summary` of its cheap local checks into the retained ``GatewayStatus.health``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TypeVar

from pydantic import BaseModel

from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.mqtt import MqttClient, MqttSettings, TlsSettings
from pdm_common.preflight import file_fields, preflight
from pdm_common.settings import ServiceSettings, load_settings, locate_config

__all__ = [
    "CERT_WARN_DAYS",
    "CheckResult",
    "Status",
    "check_broker",
    "check_broker_tls",
    "check_certificates",
    "check_clock",
    "check_clock_at",
    "check_disk",
    "check_disk_at",
    "check_files",
    "check_secret_file",
    "check_sqlite",
    "credential_map",
    "credential_sources",
    "exit_code",
    "fail",
    "health_summary",
    "installed_unit",
    "mqtt_for_doctor",
    "ok",
    "render",
    "resolve_credential",
    "run_checks",
    "unit_credentials",
    "warn",
]

_log = get_logger(__name__)

CERT_WARN_DAYS = 30
"""Warn a month ahead: enough for a ticket to the PKI owner and a site visit if one is needed."""
DISK_FAIL_BYTES = 64 * 1024 * 1024
"""Below this the outbox cannot grow and SQLite cannot checkpoint its WAL (which needs free space
on the order of the WAL itself); events would be refused."""
DISK_WARN_BYTES = 512 * 1024 * 1024
"""A few days of a busy gateway's outbox while the uplink is down (assumption: ~1 KB an event)."""
_TIMESYNC_DIR = Path("/run/systemd/timesync")
"""systemd-timesyncd creates ``synchronized`` here once the clock is NTP-synchronised."""
_LOGIN_POLL_S = 0.1
"""How often the login probe looks for a refusal while it waits for CONNACK."""
_HEALTH_MAX_ENTRIES = 32
_HEALTH_MAX_CHARS = 200
"""Bounds of ``GatewayStatus.health`` (pdm_common.contracts)."""


class Status(StrEnum):
    """Verdict of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the doctor's report.

    Attributes:
        name: short stable id (``broker``, ``tls.ca``) used in output and in the health summary.
        status: ok, warn or fail.
        detail: what was found, with the values that matter.
        fix: what the operator should do; empty when there is nothing to do.
    """

    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> CheckResult:
    """A passing check."""
    return CheckResult(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> CheckResult:
    """A check that works now but needs attention."""
    return CheckResult(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    """A check that blocks correct operation."""
    return CheckResult(name, Status.FAIL, detail, fix)


Check = Callable[[], CheckResult | Sequence[CheckResult]]
_SEVERITY_ORDER = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2}


def run_checks(checks: Iterable[tuple[str, Check]]) -> list[CheckResult]:
    """Run every check; one that raises becomes a ``fail`` result naming the error, not a crash."""
    results: list[CheckResult] = []
    for name, check in checks:
        try:
            outcome = check()
        except Exception as exc:  # a doctor must report, not die, whatever it finds
            _log.exception("doctor.check_crashed", check=name)
            outcome = fail(name, f"check crashed: {type(exc).__name__}: {exc}", "report this as a bug")
        results.extend([outcome] if isinstance(outcome, CheckResult) else outcome)
    return results


def render(results: Sequence[CheckResult]) -> str:
    """Human-readable report, one line per check and an indented ``fix:`` line where needed."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"[{r.status.value.upper():>4}] {r.name:<{width}}  {r.detail}")
        if r.fix:
            lines.append(f"       {'':<{width}}  fix: {r.fix}")
    fails = sum(r.status is Status.FAIL for r in results)
    warns = sum(r.status is Status.WARN for r in results)
    lines.append(f"{len(results)} checks: {fails} failed, {warns} warnings")
    return "\n".join(lines)


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 when any check failed, else 0 (warnings do not fail the run)."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def health_summary(results: Sequence[CheckResult]) -> dict[str, str]:
    """Compact ``{check: "ok" | "warn: …" | "fail: …"}`` for ``GatewayStatus.health`` (bounded)."""
    summary: dict[str, str] = {}
    for r in results[:_HEALTH_MAX_ENTRIES]:
        text = r.status.value if r.status is Status.OK else f"{r.status.value}: {r.detail}"
        summary[r.name[:64]] = text[:_HEALTH_MAX_CHARS]
    return summary


# --- credentials ----------------------------------------------------------------------------------

_LOAD_CREDENTIAL = re.compile(r"^\s*LoadCredential\s*=\s*([^:\s]+):(\S+)\s*$", re.MULTILINE)


def credential_sources(unit_text: str) -> dict[str, Path]:
    """``LoadCredential=ID:PATH`` lines of a unit as ``{ID: PATH}`` (PATH may be a directory)."""
    return {m.group(1): Path(m.group(2)) for m in _LOAD_CREDENTIAL.finditer(unit_text)}


def resolve_credential(path: Path, unit: str, sources: Mapping[str, Path]) -> Path:
    """Where to read a configured ``/run/credentials/<unit>/ID`` path when the service is not running.

    systemd materialises credentials only inside the running unit, so an operator running doctor
    from a shell reads the source the unit loads them from. Other paths are returned unchanged.
    """
    run_dir = PurePosixPath("/run/credentials") / unit
    if path.exists() or PurePosixPath(path).parent != run_dir:
        return path
    cred_id = path.name
    if cred_id in sources:
        return sources[cred_id]
    for prefix, source in sources.items():  # directory form: ID_<file name>
        if cred_id.startswith(prefix + "_"):
            return source / cred_id[len(prefix) + 1:]
    return path


def check_secret_file(name: str, path: Path, *, required: bool = True) -> CheckResult:
    """A secret file exists, is non-empty and is not readable by group or others."""
    try:
        info = path.stat()
        size = info.st_size
    except OSError as exc:
        if PurePosixPath(path).is_relative_to("/run/credentials"):
            fix = ("systemd provides this only to the running unit: install the unit (its LoadCredential= "
                   "line names the source file) and put the secret in that source file, mode 0600")
        else:
            fix = f"create {path} (mode 0600) with the secret in it"
        return fail(name, f"{path}: {exc.strerror or exc}", fix)
    if size == 0:
        detail = f"{path} is empty"
        fix = f"write the secret into {path}"
        return fail(name, detail, fix) if required else warn(name, detail, fix)
    if info.st_mode & 0o077:
        return warn(name, f"{path} has mode {info.st_mode & 0o777:o}", f"chmod 600 {path}")
    return ok(name, f"{path} present ({size} bytes)")


def credential_map(settings: BaseModel, unit: str, sources: Mapping[str, Path]) -> dict[Path, Path]:
    """Every configured ``/run/credentials/<unit>/…`` file of ``settings`` → the source it is loaded from."""
    mapped = {path: resolve_credential(path, unit, sources) for _field, path in file_fields(settings)}
    return {path: source for path, source in mapped.items() if source != path}


def check_files(settings: BaseModel, *, directories: Sequence[tuple[str, Path]],
                resolve: Mapping[Path, Path]) -> list[CheckResult]:
    """:func:`~pdm_common.preflight.preflight` as doctor lines: one ``fail`` per problem, else one ``ok``."""
    problems = preflight(settings, directories=directories, resolve=resolve)
    if not problems:
        return [ok("files", "every configured file is readable, certificates load, directories are writable")]
    return [fail(f"files.{p.field}", f"{p.path} {p.detail}", p.fix) for p in problems]


UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
"""Where an installed unit lives, in systemd's order: local (``edge-agent install``), then packaged."""


def installed_unit(unit: str, root: Path = Path("/")) -> Path:
    """The unit file systemd would load for ``unit`` below ``root`` (the first of :data:`UNIT_DIRS`)."""
    for directory in UNIT_DIRS:
        if (root / directory / unit).is_file():
            return root / directory / unit
    return root / UNIT_DIRS[0] / unit


def unit_credentials(unit_file: Path) -> dict[str, Path]:
    """Credential sources of an installed unit file; empty when it is not installed."""
    try:
        return credential_sources(unit_file.read_text(encoding="utf-8"))
    except OSError:
        return {}


def mqtt_for_doctor(mqtt: MqttSettings, unit: str, sources: Mapping[str, Path]) -> MqttSettings:
    """``mqtt`` as the doctor uses it: credential paths readable from a shell, no lasting session."""
    update: dict[str, object] = {"session_expiry_s": 0}
    if mqtt.password_file is not None:
        update["password_file"] = resolve_credential(mqtt.password_file, unit, sources)
    if mqtt.tls.key_file is not None:
        update["tls"] = mqtt.tls.model_copy(update={"key_file": resolve_credential(mqtt.tls.key_file, unit, sources)})
    return mqtt.model_copy(update=update)


# --- certificates ---------------------------------------------------------------------------------




def _validity_verdict(name: str, path: Path, not_before: datetime, not_after: datetime, now: datetime) -> CheckResult:
    if now < not_before:
        return fail(name, f"{path} is not valid before {not_before:%Y-%m-%d %H:%M}Z (now {now:%Y-%m-%d %H:%M}Z)",
                    "the clock is behind or the certificate was issued for the future: fix time sync first")
    if now >= not_after:
        return fail(name, f"{path} expired on {not_after:%Y-%m-%d}", f"issue a new certificate and replace {path}")
    left = not_after - now
    if left < timedelta(days=CERT_WARN_DAYS):
        return warn(name, f"{path} expires in {left.days} days ({not_after:%Y-%m-%d})",
                    f"renew it before {not_after:%Y-%m-%d}")
    return ok(name, f"{path} valid until {not_after:%Y-%m-%d}")


def _check_cert_file(name: str, path: Path, now: datetime) -> CheckResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return fail(name, f"cannot read {path}: {exc}", f"put the PEM file at {path} or fix the path in [mqtt.tls]")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return fail(name, f"{path} holds no PEM certificate", "use a PEM (-----BEGIN CERTIFICATE-----) file")
    try:
        # Imported here: only doctor and the health summary read certificate dates, not the data path;
        # it is the `doctor` extra (the gateway package bundles it).
        from cryptography import x509
    except ImportError:
        return warn(name, f"{path} is PEM; its dates are not checked (cryptography is not installed)",
                    "pip install 'pdm-edge[doctor]' for certificate expiry checks")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return fail(name, f"{path}: malformed certificate ({exc})", "re-export the certificate as PEM")
    validities = sorted(((c.not_valid_before_utc, c.not_valid_after_utc) for c in certs), key=lambda v: v[1])
    # A bundle is as good as its worst certificate; among equals, report the first to expire.
    verdicts = [_validity_verdict(name, path, nb, na, now) for nb, na in validities]
    return min(verdicts, key=lambda r: _SEVERITY_ORDER[r.status])


def check_certificates(tls: TlsSettings, now: datetime, *, key_file: Path | None = None) -> list[CheckResult]:
    """CA bundle and client certificate: readable, loadable, matching key, not expired or expiring soon.

    Args:
        tls: the service's ``[mqtt.tls]`` settings.
        now: current UTC time.
        key_file: where to read the client key (a credential's source); default ``tls.key_file``.
    """
    if not tls.enabled:
        return [warn("tls", "TLS is disabled", "enable [mqtt.tls] unless the broker is on this host's loopback")]
    results = []
    if tls.ca_file is None:
        results.append(ok("tls.ca", "system CA store"))
    else:
        results.append(_check_cert_file("tls.ca", tls.ca_file, now))
    if tls.cert_file is not None:
        cert = _check_cert_file("tls.cert", tls.cert_file, now)
        results.append(cert)
        key = key_file or tls.key_file
        if cert.status is not Status.FAIL and key is not None:
            try:
                ssl.create_default_context().load_cert_chain(tls.cert_file, key)
                results.append(ok("tls.key", f"{key} matches {tls.cert_file}"))
            except (OSError, ssl.SSLError) as exc:
                results.append(fail("tls.key", f"{key}: {exc}", "install the private key that belongs to cert_file"))
    if tls.insecure:
        results.append(warn("tls.insecure", "host-name verification is off", "set insecure = false"))
    return results


# --- clock, disk, SQLite ----------------------------------------------------------------------------


def check_clock(now: datetime, *, not_before: datetime, synchronized: bool | None) -> CheckResult:
    """The wall clock is plausible: not before ``not_before`` and, where known, NTP-synchronised.

    Args:
        now: the current UTC time.
        not_before: the latest moment known to have passed (release date, newest state file).
        synchronized: systemd-timesyncd's verdict (``/run/systemd/timesync/synchronized``); None
            when unknown.
    """
    if now < not_before:
        return fail("clock", f"clock says {now:%Y-%m-%d %H:%M}Z, before {not_before:%Y-%m-%d %H:%M}Z "
                    "which has already passed", "enable NTP (timedatectl set-ntp true) and check the uplink; "
                    "a Pi has no battery-backed clock")
    if synchronized is False:
        return warn("clock", f"clock {now:%Y-%m-%d %H:%M}Z is not NTP-synchronised",
                    "timedatectl set-ntp true; check that UDP 123 reaches a time server")
    return ok("clock", f"{now:%Y-%m-%d %H:%M}Z" + (", NTP-synchronised" if synchronized else ""))


def check_disk(path: Path, *, free_bytes: int) -> CheckResult:
    """Free space on the file system of the outbox."""
    mib = free_bytes // (1024 * 1024)
    if free_bytes < DISK_FAIL_BYTES:
        return fail("disk", f"{mib} MiB free for {path}", "free space on that file system (journald: "
                    "journalctl --vacuum-size=100M) or move state_dir to a bigger one")
    if free_bytes < DISK_WARN_BYTES:
        return warn("disk", f"only {mib} MiB free for {path}", "free space before the outbox needs it")
    return ok("disk", f"{mib} MiB free for {path}")


def check_clock_at(now: datetime, seen: Sequence[Path]) -> CheckResult:
    """:func:`check_clock` against the newest mtime of ``seen`` and systemd-timesyncd's flag.

    Args:
        now: current UTC time.
        seen: files this machine wrote earlier (installed code, outbox, checkpoints); their
            mtimes are moments that have passed, so the clock must not be behind them.
    """
    stamps = [p.stat().st_mtime for p in seen if p.exists()]
    not_before = datetime.fromtimestamp(max(stamps), UTC) if stamps else datetime.min.replace(tzinfo=UTC)
    synced = (_TIMESYNC_DIR / "synchronized").exists() if _TIMESYNC_DIR.is_dir() else None
    return check_clock(now, not_before=not_before, synchronized=synced)


def check_disk_at(path: Path) -> CheckResult:
    """:func:`check_disk` for the file system ``path`` is (or, before first start, will be) on."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return check_disk(path, free_bytes=shutil.disk_usage(probe).free)


def check_sqlite(name: str, path: Path) -> CheckResult:
    """An SQLite file passes ``PRAGMA quick_check`` (opened read-only); absent is fine (created on start)."""
    if not path.exists():
        return ok(name, f"{path} not created yet")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return fail(name, f"{path}: {exc}", f"stop the service, move {path} aside (its unsent events are lost) "
                    "and start again")
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    if verdict != "ok":
        return fail(name, f"{path} is damaged: {verdict}", f"stop the service, keep a copy of {path} for "
                    "analysis, try `sqlite3 FILE .recover`, else move it aside")
    return ok(name, f"{path} intact")


# --- broker -----------------------------------------------------------------------------------------


def check_broker_tls(settings: MqttSettings, now: datetime, *, timeout_s: float) -> list[CheckResult]:
    """TCP reachability and, with TLS, the handshake and the broker certificate's expiry."""
    where = f"{settings.host}:{settings.port}"
    try:
        raw = socket.create_connection((settings.host, settings.port), timeout=timeout_s)
    except OSError as exc:
        return [fail("broker.reach", f"cannot reach {where}: {exc.strerror or exc}",
                     "start the broker (systemctl status mosquitto), or fix [mqtt] host/port and the firewall")]
    with raw:
        results = [ok("broker.reach", f"{where} accepts TCP")]
        if not settings.tls.enabled:
            return results
        ctx = ssl.create_default_context(cafile=str(settings.tls.ca_file) if settings.tls.ca_file else None)
        ctx.check_hostname = not settings.tls.insecure
        try:
            with ctx.wrap_socket(raw, server_hostname=settings.host) as tls:
                peer = tls.getpeercert()
        except (OSError, ssl.SSLError) as exc:
            results.append(fail("broker.tls", f"TLS handshake with {where} failed: {exc}",
                                "the broker certificate must be signed by ca_file, valid now, and name the "
                                "host in [mqtt] host (subjectAltName)"))
            return results
        not_after = peer.get("notAfter") if peer else None
        if isinstance(not_after, str):
            # The handshake already proved notBefore <= now; only the expiry is left to judge.
            expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
            results.append(_validity_verdict("broker.tls", Path(f"broker certificate of {where}"), now, expires, now))
        else:
            results.append(ok("broker.tls", f"TLS handshake with {where} ok"))
    return results


def check_broker(settings: MqttSettings, now: datetime, *, client_id: str, timeout_s: float) -> list[CheckResult]:
    """Reach the broker (TCP, TLS handshake) and, if that worked, log in with the service's settings.

    Args:
        settings: the service's MQTT settings, credential paths readable (:func:`mqtt_for_doctor`).
        now: current UTC time, for the broker certificate's expiry.
        client_id: a client id the running service does not use (a login would take its session).
        timeout_s: bound of each probe.
    """
    results = check_broker_tls(settings, now, timeout_s=timeout_s)
    if any(r.status is Status.FAIL for r in results):
        return results
    return [*results, _check_login(settings, client_id=client_id, timeout_s=timeout_s)]


def _check_login(settings: MqttSettings, *, client_id: str, timeout_s: float) -> CheckResult:
    where = f"{settings.host}:{settings.port}"
    try:
        client = MqttClient(settings, client_id=client_id)
    except OSError as exc:  # password_file unreadable
        return fail("broker.login", f"cannot read the broker password: {exc}", "fix [mqtt] password_file")
    user = settings.username or "(anonymous)"
    client.start()
    try:
        for _ in range(max(1, round(timeout_s / _LOGIN_POLL_S))):
            if client.wait_connected(_LOGIN_POLL_S):
                return ok("broker.login", f"logged in to {where} as {user} with MQTT {settings.protocol}")
            if client.auth_failed:
                return fail("broker.login", f"{where} refused user {user}",
                            "check the password credential and the broker's password_file/ACL (config/mosquitto)")
        return fail("broker.login", f"no CONNACK from {where} within {timeout_s:.0f}s",
                    "check the broker log (journalctl -u mosquitto) and the [mqtt] protocol version")
    finally:
        client.stop(timeout_s=2.0)


# --- the `doctor` sub-command, shared by both services ---------------------------------------------

S = TypeVar("S", bound=ServiceSettings)


def add_doctor_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    model: type[S],
    service: str,
    checks: Callable[[S, datetime, bool, float], list[tuple[str, Check]]],
    describe: Callable[[S], str],
    help_text: str,
    offline_help: str,
    config_fix: str,
) -> None:
    """Register ``doctor`` on a service's command line (it uses the global ``--config``).

    Args:
        subparsers: the service's sub-command registry.
        model: the service's settings model.
        service: ``edge-agent`` or ``cloud-bridge`` (its default config path).
        checks: builds the checks from ``(settings, now, network, timeout_s)``.
        describe: one line naming what the loaded config is about (gateway, desks …).
        help_text: the sub-command's help.
        offline_help: what ``--offline`` skips.
        config_fix: what to tell the operator when the config does not load.
    """

    def run(args: argparse.Namespace) -> int:
        configure_logging(level="critical")  # the report is the output; adapter warnings would repeat it
        location = locate_config(getattr(args, "config", None), service=service)
        try:
            settings = load_settings(model, location.path)
        except ConfigError as exc:
            results = [fail("config", str(exc), config_fix)]
        else:
            results = [ok("config", f"{location.path} (from {location.origin}): {describe(settings)}")]
            results += run_checks(checks(settings, datetime.now(UTC), not args.offline, args.timeout))
        print(render(results))
        return exit_code(results)

    doctor = subparsers.add_parser("doctor", help=help_text)
    doctor.add_argument("--offline", action="store_true", help=offline_help)
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per network probe (default 5)")
    doctor.set_defaults(func=run)
