"""``edge-agent doctor``: check a gateway's configuration and surroundings; say what to fix.

Checks: config loads; every file it names is readable, certificates load, the state directory is
writable (:mod:`pdm_common.preflight`); broker password credential; TLS files and their expiry; broker reachable,
TLS handshake, login; clock; free disk for the outbox; outbox integrity; checkpoints. Exit status
1 when any check fails. :func:`health` is the cheap local subset the agent publishes in its
retained ``GatewayStatus.health`` every ``status_interval_s``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import pdm_common
from edge_agent.config import AgentSettings
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
    health_summary,
    installed_unit,
    mqtt_for_doctor,
    ok,
    run_checks,
    unit_credentials,
    warn,
)
from pdm_common.mqtt import MqttSettings

__all__ = ["add_parser", "agent_checks", "check_checkpoint_contents", "check_checkpoints", "credential_map_of",
           "directories", "health"]

UNIT = "pdm-edge-agent.service"
OUTBOX_FILE = "outbox.sqlite3"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_STORE = "assets.sqlite3"
_PARTIAL_SUFFIXES = (".tmp", ".partial")


def check_checkpoints(directory: Path) -> CheckResult:
    """Checkpoint files are non-empty and no write was left half-done."""
    if not directory.is_dir():
        return ok("checkpoints", f"{directory} not created yet (models start warming up)")
    files = sorted(p for p in directory.iterdir() if p.is_file())
    # SQLite's -wal and -shm companions are legitimately empty between writes.
    empty = [p.name for p in files if p.stat().st_size == 0 and not p.name.endswith(("-wal", "-shm"))]
    partial = [p.name for p in files if p.suffix in _PARTIAL_SUFFIXES]
    if empty:
        return fail("checkpoints", f"empty checkpoint files: {', '.join(empty[:5])}",
                    f"delete them from {directory}; those assets re-warm from scratch")
    if partial:
        return warn("checkpoints", f"interrupted writes left behind: {', '.join(partial[:5])}",
                    f"delete them from {directory} (the previous checkpoint is intact); check free disk")
    return ok("checkpoints", f"{len(files)} checkpoint files in {directory}")


def check_checkpoint_contents(path: Path) -> CheckResult:
    """Every asset checkpoint would load (decoded the agent's restricted way; nothing in it runs)."""
    from edge_agent.checkpoint import validate  # imports the detector's classes: doctor only, not health

    report = validate(path)
    if report.error is not None:
        return fail("checkpoint_contents", report.error,
                    f"stop the agent and move {path} aside; every asset re-warms")
    if report.refused:
        shown = "; ".join(f"{site}/{asset}: {why}" for (site, asset), why in report.refused[:3])
        return warn("checkpoint_contents", f"{len(report.refused)} of {report.assets} asset checkpoints would be "
                    f"refused ({shown})",
                    "those assets re-warm on the next start; a refused reference to code means someone wrote to "
                    "the state directory: check who can (it should be the agent's user only)")
    return ok("checkpoint_contents", f"{report.assets} asset checkpoints load")


def directories(settings: AgentSettings) -> list[tuple[str, Path]]:
    """Directories the agent must be able to write before it starts: the state directory.

    Its ``checkpoints/`` is not checked here: the agent runs degraded (alerting, not checkpointing,
    ``pdm_agent_degraded{condition="checkpoint_disk"}``) until that directory is usable again.
    """
    return [("state_dir", settings.state_dir)]


def credential_map_of(settings: AgentSettings, root: Path = Path("/")) -> dict[Path, Path]:
    """Configured credential paths → the installed unit's ``LoadCredential=`` sources."""
    return credential_map(settings, UNIT, unit_credentials(installed_unit(UNIT, root)))


def _local_checks(settings: AgentSettings, now: datetime, mqtt: MqttSettings) -> list[tuple[str, Check]]:
    state = settings.state_dir
    return [
        ("tls", lambda: check_certificates(mqtt.tls, now)),
        # Moments this machine has already seen: when the code was installed, the last state writes.
        ("clock", lambda: check_clock_at(now, [Path(pdm_common.__file__), state / OUTBOX_FILE,
                                               state / CHECKPOINT_DIR])),
        ("disk", lambda: check_disk_at(state)),
        ("checkpoints", lambda: check_checkpoints(state / CHECKPOINT_DIR)),
    ]


def agent_checks(settings: AgentSettings, *, now: datetime, network: bool = True, timeout_s: float = 5.0,
                 root: Path = Path("/")) -> list[tuple[str, Check]]:
    """Every doctor check for ``settings``, in report order.

    Args:
        settings: the loaded agent settings.
        now: current UTC time (certificate expiry, clock sanity).
        network: also probe the broker (TCP, TLS handshake, login).
        timeout_s: bound of each network probe.
        root: where the installed unit lives (its LoadCredential= sources map credential paths).
    """
    mqtt = mqtt_for_doctor(settings.mqtt, UNIT, unit_credentials(installed_unit(UNIT, root)))
    resolve = credential_map_of(settings, root)
    checks: list[tuple[str, Check]] = [
        ("files", lambda: check_files(settings, directories=directories(settings), resolve=resolve))]
    if mqtt.username is not None and mqtt.password_file is not None:
        password_file = mqtt.password_file
        checks.append(("credentials", lambda: check_secret_file("credentials.mqtt", password_file)))
    checks += _local_checks(settings, now, mqtt)
    checks.append(("outbox", lambda: check_sqlite("outbox", settings.state_dir / OUTBOX_FILE)))
    checks.append(("checkpoint_contents",
                   lambda: check_checkpoint_contents(settings.state_dir / CHECKPOINT_DIR / CHECKPOINT_STORE)))
    if network:
        client_id = f"{settings.mqtt.client_id or f'pdm-edge-agent-{settings.gateway}'}-doctor"
        checks.append(("broker", lambda: check_broker(mqtt, now, client_id=client_id, timeout_s=timeout_s)))
    return checks


def health(settings: AgentSettings, *, now: datetime) -> dict[str, str]:
    """Small ``{check: verdict}`` summary for ``GatewayStatus.health``: local checks only, no network."""
    return health_summary(run_checks(_local_checks(settings, now, settings.mqtt)))


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor`` on the ``edge-agent`` command line (uses the global ``--config``)."""
    add_doctor_command(
        subparsers,
        model=AgentSettings,
        service="edge-agent",
        checks=lambda s, now, network, timeout_s: agent_checks(s, now=now, network=network, timeout_s=timeout_s),
        describe=lambda s: f"gateway={s.gateway} site={s.site}",
        help_text="check config, broker, TLS, clock, disk and state; print fixes",
        offline_help="skip the broker probes",
        config_fix="fix the file, then run `edge-agent check-config`",
    )
