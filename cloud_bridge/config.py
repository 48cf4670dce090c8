"""Settings of the cloud bridge: one :class:`BridgeSettings`, loaded with ``load_settings``.

TOML layout (see ``config/cloud-bridge.example.toml``)::

    kinds_path        vendor machine kinds, the file the agents read too (pdm_common.kinds)
    [kinds.<name>]    or declared inline: words, channel units, fault parts and checks on tickets
    [mqtt]            broker connection (pdm_common.mqtt.MqttSettings)
    [gateways.<gw>]   each gateway's site and alert-signing key (require_signed_alerts = true)
    [commands]        the bridge's command-signing key (desk changes sent to the edge)
    [sync]            two-way sync: desk polling interval, PagerDuty webhook listener
    [desks.<name>]    one block per configured service desk (kind, base_url, credentials)
    [routing]         which desk gets a ticket: per site, per customer, else the default
    [outbox]          backend sqlite|postgres, path or dsn, bound and lease length
    [retry]           backoff, attempts, circuit breaker
    [sla]             response hours per priority, warning threshold, holidays, time zone
    [metrics]         the Prometheus endpoint (localhost by default)
    [log]             level and line format (pdm_common.logs.LogSettings, as in the agent)

Secrets (desk tokens, HMAC secrets, the PostgreSQL DSN) are ``SecretStr`` or ``*_file`` paths and
are never logged; ``repr`` of the settings shows them as ``**********``.
"""

from __future__ import annotations

import socket
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloud_bridge.outbox import GAP_WAIT_S
from pdm_common.contracts import NAME_PATTERN
from pdm_common.kinds import KindName, KindsFile, check_declarations, declarations, read_kinds_file
from pdm_common.logs import LogSettings
from pdm_common.metrics import DEFAULT_METRICS_HOST
from pdm_common.mqtt import MqttSettings
from pdm_common.preflight import Problem
from pdm_common.settings import ServiceSettings

__all__ = [
    "BridgeSettings",
    "CommandSettings",
    "DeliverySettings",
    "DeskKind",
    "DeskSettings",
    "GatewaySettings",
    "MetricsSettings",
    "OutboxSettings",
    "RetrySettings",
    "RoutingSettings",
    "SlaSettings",
    "SyncSettings",
]

DeskName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CONTACT_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")
Language = Literal["en", "no"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeskKind(StrEnum):
    """The desk protocols the bridge speaks."""

    WEBHOOK = "webhook"
    PAGERDUTY = "pagerduty"
    SERVICENOW = "servicenow"
    JSM = "jsm"
    ZENDESK = "zendesk"


def _read_secret(value: SecretStr | None, path: Path | None) -> str | None:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return value.get_secret_value() if value is not None else None


def _secret_lines(value: SecretStr | None, path: Path | None) -> list[str]:
    """The secrets of a key: one per line of the file (several during a rotation)."""
    text = _read_secret(value, path)
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _one_secret(value: SecretStr | None, path: Path | None, what: str) -> None:
    if value is not None and path is not None:
        raise ValueError(f"set {what} or {what}_file, not both")


class GatewaySettings(_Section):
    """One gateway that may publish alerts: the site it speaks for and its alert-signing key."""

    site: DeskName = Field(description="the site this gateway speaks for (the topic's {site})")
    secret: SecretStr | None = Field(None, description="the gateway's signing secret (prefer secret_file)")
    secret_file: Path | None = Field(None, description="file holding the secret; several lines during a rotation")

    @model_validator(mode="after")
    def _has_secret(self) -> Self:
        _one_secret(self.secret, self.secret_file, "secret")
        if self.secret is None and self.secret_file is None:
            raise ValueError("a gateway needs secret_file (the key its agent signs alerts with, [signing] there)")
        return self

    def secrets(self) -> list[str]:
        """The accepted secrets (read from ``secret_file`` when set)."""
        return _secret_lines(self.secret, self.secret_file)


class CommandSettings(_Section):
    """The key the bridge signs its commands to the edge with (agents list it under ``[commands] keys``)."""

    key_id: DeskName = Field("cloud-bridge", description="key id the agents know this key by")
    secret: SecretStr | None = Field(None, description="signing secret (prefer secret_file)")
    secret_file: Path | None = Field(None, description="file holding the signing secret")

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        _one_secret(self.secret, self.secret_file, "secret")
        return self

    def resolved_secret(self) -> str | None:
        """The signing secret, or None when commands are not configured."""
        return _read_secret(self.secret, self.secret_file)


class SyncSettings(_Section):
    """Two-way sync: changes made in the desks flow back to the edge as signed commands."""

    enabled: bool = Field(True, description="poll the desks and send commands; needs [commands] secret")
    poll_s: float = Field(30.0, ge=0.1, le=3600, description="how often each polled desk is asked what changed")
    overlap_s: float = Field(120.0, ge=0, le=3600, description="re-read this much before the last poll (clock skew, "
                             "eventually consistent search)")
    acknowledge_snooze_h: float = Field(
        4.0, ge=0, le=336, description="an acknowledgement in the desk snoozes updates this long (0: no command)")
    listen_host: str = Field("127.0.0.1", description="address of the webhook listener (PagerDuty webhooks v3)")
    listen_port: int = Field(0, ge=0, le=65535, description="port of the webhook listener; 0 disables it")


class DeskSettings(_Section):
    """One service desk: its protocol, address and credentials."""

    kind: DeskKind = Field(description="webhook, pagerduty, servicenow, jsm or zendesk")
    base_url: str = Field(min_length=1, description="desk base URL, e.g. https://acme.zendesk.com")
    path: str = Field("/", description="webhook only: path the tickets are POSTed to")
    username: str | None = Field(None, description="basic-auth user (ServiceNow user, Jira/Zendesk e-mail)")
    token: SecretStr | None = Field(None, description="API token / password / PagerDuty routing key")
    token_file: Path | None = Field(None, description="file holding the token (systemd credential)")
    hmac_secret: SecretStr | None = Field(None, description="webhook: Standard Webhooks signing secret (whsec_...); "
                                          "pagerduty: the v3 webhook subscription's signing secret")
    hmac_secret_file: Path | None = Field(None, description="file holding hmac_secret")
    ca_file: Path | None = Field(None, description="PEM bundle to verify the desk's TLS certificate with (default: "
                                 "the system's trust store; verification is always on)")
    timeout_s: float = Field(10.0, gt=0, le=120, description="per-request timeout (connect, read, write)")
    max_connections: int = Field(16, ge=1, le=256, description="connection-pool bound of this desk's client")
    attach_plots: bool = Field(True, description="attach a PNG of the contributing sensors where the desk can")
    table: str = Field("incident", description="servicenow only: the table tickets live in")
    service_desk_id: str = Field("1", description="jsm only: serviceDeskId")
    request_type_id: str = Field("1", description="jsm only: requestTypeId")
    resolve_transitions: list[str] = Field(
        default_factory=lambda: ["Resolve this issue", "Resolve", "Done"],
        description="jsm only: names of the workflow transition that resolves, first available wins")
    reopen_transitions: list[str] = Field(
        default_factory=lambda: ["Reopen", "Back to in progress", "In progress", "Respond to customer"],
        description="jsm only: names of the transition back into an agent queue (fix not confirmed)")
    verify_transitions: list[str] = Field(
        default_factory=lambda: ["Pending", "Waiting for customer"],
        description="jsm only: names of the transition that parks a serviced request while the fix is verified")
    request_fields: dict[str, str] = Field(
        default_factory=dict, description="jsm only: extra requestFieldValues by field id, templates with {site} "
        "{asset} {serial} {priority} {reference} {fault} (for fields the request type requires)")
    search_consistency_s: float = Field(
        60.0, ge=0, le=3600, description="jsm only: how long Jira search may lag behind a create (a retried "
        "create waits this long for a possibly landed first attempt to become searchable)")
    create_callers: bool = Field(
        True, description="servicenow: create a sys_user for an unknown caller; jsm: create the customer; "
        "zendesk: create the requester")
    close_code_fixed: str = Field("Solution provided", description="servicenow only: close_code of a confirmed fix")
    close_code_other: str = Field("No resolution provided",
                                  description="servicenow only: close_code of a self-recovery or baseline reset")

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if self.hmac_secret is not None and self.hmac_secret_file is not None:
            raise ValueError("set hmac_secret or hmac_secret_file, not both")
        if self.kind is DeskKind.PAGERDUTY and self.token is None and self.token_file is None:
            raise ValueError("pagerduty needs token (the 32-character integration routing key)")
        return self

    def resolved_token(self) -> str | None:
        """The token, read from ``token_file`` when set."""
        return _read_secret(self.token, self.token_file)

    def resolved_hmac_secret(self) -> str | None:
        """The webhook signing secret, read from ``hmac_secret_file`` when set."""
        return _read_secret(self.hmac_secret, self.hmac_secret_file)


class RoutingSettings(_Section):
    """Which desk receives an asset's tickets: the site's, else the customer's, else ``default``."""

    default: DeskName = Field("main", description="desk name used when no site or customer rule matches")
    sites: dict[str, DeskName] = Field(default_factory=dict, description="site name -> desk name")
    customers: dict[str, DeskName] = Field(default_factory=dict, description="customer id -> desk name")

    def desk_for(self, site: str, customer_id: str | None) -> str:
        """The desk for an asset: its site's rule, else its customer's, else the default."""
        if site in self.sites:
            return self.sites[site]
        if customer_id is not None and customer_id in self.customers:
            return self.customers[customer_id]
        return self.default


class OutboxSettings(_Section):
    """The durable delivery queue."""

    backend: Literal["sqlite", "postgres"] = Field("sqlite", description="sqlite (one replica) or postgres (shared)")
    path: Path = Field(Path("/var/lib/pdm-cloud-bridge/outbox.db"), description="sqlite database file")
    dsn: SecretStr | None = Field(None, description="postgres DSN, e.g. postgresql://bridge@db/pdm")
    dsn_file: Path | None = Field(None, description="file holding the postgres DSN")
    synchronous_full: bool = Field(True, description="sqlite: fsync every commit (synchronous=FULL)")
    max_events: int = Field(100_000, ge=10, description="bound on queued events; oldest 'updated' dropped first")
    lease_s: float = Field(60.0, gt=0, le=3600, description="how long a replica owns an event it is delivering")
    gap_wait_s: float = Field(
        GAP_WAIT_S, ge=0, le=86_400, description="how long an alert event waits for missing lower event_seqs of its "
        "alert (re-sent by the agent's echo) before it goes to the desk without them; keep it above the agents' "
        "alert_echo_s plus the bridge's reconnect delay")

    @model_validator(mode="after")
    def _dsn(self) -> Self:
        if self.backend == "postgres" and self.dsn is None and self.dsn_file is None:
            raise ValueError("backend = 'postgres' needs dsn or dsn_file")
        return self

    def resolved_dsn(self) -> str | None:
        """The PostgreSQL DSN, read from ``dsn_file`` when set."""
        return _read_secret(self.dsn, self.dsn_file)


class RetrySettings(_Section):
    """Backoff, retry bound and circuit breaker, per desk."""

    base_s: float = Field(0.5, gt=0, description="ceiling of the first retry delay (full jitter below it)")
    cap_s: float = Field(300.0, gt=0, description="largest retry delay")
    max_attempts: int = Field(30, ge=1, description="attempts before an event is dead-lettered as exhausted")
    max_retry_after_s: float = Field(3600.0, gt=0, description="cap on a server's Retry-After")
    circuit_failures: int = Field(5, ge=1, description="consecutive failures that open a desk's circuit")
    circuit_open_s: float = Field(30.0, gt=0, description="how long an open circuit waits before a trial call")
    config_error_open_s: float = Field(
        300.0, gt=0, description="a desk refused for a configuration problem (TLS certificate not trusted) is tried "
        "again after this long; its events wait, they are not counted as failed attempts")

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.cap_s < self.base_s:
            raise ValueError("cap_s must be >= base_s")
        return self


class DeliverySettings(_Section):
    """Bounded concurrency of deliveries."""

    workers: int = Field(8, ge=1, le=128, description="deliveries in flight at once, over all desks")
    poll_s: float = Field(0.5, gt=0, le=30, description="how often idle workers look for due events")
    shutdown_grace_s: float = Field(20.0, ge=0, le=300, description="SIGTERM: wait this long for in-flight work")


class SlaSettings(_Section):
    """Response promises: hours per priority, when to warn, and the calendar for urgency."""

    hours: dict[str, float] = Field(
        default_factory=lambda: {"P1": 4.0, "P2": 8.0, "P3": 24.0, "P4": 72.0},
        description="response time promised per priority, in hours",
    )
    warn_fraction: float = Field(
        0.75, gt=0, lt=1, description="warn when this share of the SLA has elapsed without acknowledgement"
    )
    timezone: str = Field("Europe/Oslo", description="IANA zone of the service organisation's calendar")
    country: str = Field("NO", description="ISO 3166-1 country of the public holidays (holidays package)")
    subdivision: str | None = Field(None, description="region of that country with its own holidays (e.g. DE: BY)")
    holidays: list[date] = Field(default_factory=list,
                                 description="extra days off besides the public ones (YYYY-MM-DD)")
    check_interval_s: float = Field(30.0, gt=0, description="how often SLA deadlines are checked")
    contact_hours: str = Field("08:00-20:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$",
                               description="when customers are called (P2-P4), in each customer's own time zone")
    contact_days: list[Weekday] = Field(
        default_factory=lambda: list(_CONTACT_DAYS),
        description="days customers are called (holidays excluded); P1 is worked around the clock")

    @field_validator("contact_hours")
    @classmethod
    def _hours_order(cls, value: str) -> str:
        start, end = (time.fromisoformat(part) for part in value.split("-"))
        if end <= start:
            raise ValueError(f"contact_hours {value!r}: the end must be after the start, e.g. 08:00-20:00")
        return value

    def contact_window(self) -> tuple[time, time]:
        """The contact hours as (start, end)."""
        start, end = self.contact_hours.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)

    def contact_weekdays(self) -> frozenset[int]:
        """The contact days as weekday numbers (Monday 0)."""
        names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        return frozenset(names.index(d) for d in self.contact_days)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Oslo") from None
        return value

    @model_validator(mode="after")
    def _calendar(self) -> Self:
        from cloud_bridge.holidays import check_calendar

        check_calendar(self.country, self.subdivision)
        return self

    @field_validator("hours")
    @classmethod
    def _all_priorities(cls, value: dict[str, float]) -> dict[str, float]:
        wanted = {"P1", "P2", "P3", "P4"}
        if set(value) != wanted or any(h <= 0 for h in value.values()):
            raise ValueError(f"give positive hours for exactly P1, P2, P3 and P4 (got {sorted(value)})")
        return value


class MetricsSettings(_Section):
    """The Prometheus endpoint of ``cloud-bridge run``."""

    enabled: bool = Field(True, description="serve Prometheus metrics")
    host: str = Field(DEFAULT_METRICS_HOST, description="bind address; localhost unless a firewall guards it")
    # 9109 next to the agent's 9108, so both can run on one host (e.g. the demo).
    port: int = Field(9109, ge=0, le=65535, description="TCP port of the metrics endpoint; 0 picks a free one, "
                      "logged as metrics.serving url=… (tests, several bridges on one host)")


class BridgeSettings(ServiceSettings):
    """All settings of ``cloud-bridge``."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    share_group: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,64}$")] = Field(
        "bridge", description="shared-subscription group of the replicas; empty for a plain subscription (amqtt)"
    )
    replica_id: DeskName = Field(
        default_factory=lambda: (socket.gethostname().split(".")[0] or "bridge")[:64],
        description="stable name of this replica (lease owner, MQTT client id)",
    )
    registry_path: Path = Field(Path("/etc/pdm-edge/assets.toml"), description="asset registry TOML")
    fault_actions_path: Path = Field(Path("/etc/pdm-edge/fault-actions.toml"), description="parts and checks per fault")
    dashboard_url: str = Field(
        "https://dashboard.example.com/assets/{site}/{asset}", description="asset dashboard link; {site} {asset}"
    )
    default_language: Language = Field("en", description="customer-message language when the registry has none")
    kinds: dict[KindName, dict[str, Any]] = Field(
        default_factory=dict, description="vendor machine kinds as [kinds.<name>] tables (the agent's schema): their "
        "words, channel units and fault parts on tickets; prefer kinds_path, shared with the agents")
    kinds_path: KindsFile | None = Field(
        None, description="a TOML file of [kinds.<name>] tables, the same file the agents read (e.g. "
        "/etc/pdm-edge/kinds.toml); a kind is declared there or in [kinds], not both")
    desks: dict[DeskName, DeskSettings] = Field(default_factory=dict, description="configured desks by name")
    gateways: dict[DeskName, GatewaySettings] = Field(
        default_factory=dict, description="gateways by name (their alert signatures' key_id): site and key")
    require_signed_alerts: bool = Field(
        True, description="refuse alerts without a valid signature of a gateway that may speak for the topic's site")
    max_seq_step: int = Field(
        100, ge=1, le=1_000_000, description="refuse an event whose event_seq is more than this above the alert's "
        "last (a forged jump must not make the real events stale)")
    commands: CommandSettings = Field(default_factory=CommandSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        check_declarations(value)
        return value

    _read_kinds_path = field_validator("kinds_path", mode="before")(read_kinds_file)

    @model_validator(mode="after")
    def _declared_once(self) -> Self:
        self.declared_kinds()
        return self

    def declared_kinds(self) -> dict[str, dict[str, Any]]:
        """The vendor kinds declared in ``kinds_path`` and in ``[kinds]`` (each in one of them)."""
        return declarations(self.kinds, self.kinds_path)

    @field_validator("desks")
    @classmethod
    def _some_desk(cls, value: dict[str, DeskSettings]) -> dict[str, DeskSettings]:
        if not value:
            raise ValueError("configure at least one desk as a [desks.<name>] table with kind and base_url")
        return value

    def signing_problem(self) -> Problem | None:
        """Why alert intake cannot work as configured, or None.

        Checked by ``run`` (before the outbox opens), ``check-config`` and ``doctor``; the gateways' key
        files themselves are checked with every other file (:func:`pdm_common.preflight.preflight`).
        """
        if self.require_signed_alerts and not self.gateways:
            return Problem(
                "require_signed_alerts", None,
                "is true but no [gateways.<gateway>] table is configured, so every alert would be refused",
                "add one per gateway with site and secret_file (the key its agent signs with, agent config "
                "[signing]), or set require_signed_alerts = false on a closed test network")
        return None

    @field_validator("routing")
    @classmethod
    def _routes_exist(cls, value: RoutingSettings, info: ValidationInfo) -> RoutingSettings:
        desks = info.data.get("desks") or {}
        targets = {value.default, *value.sites.values(), *value.customers.values()}
        unknown = sorted(targets - set(desks))
        if desks and unknown:
            raise ValueError(f"routing names desks {unknown} that are not configured under [desks.<name>]")
        return value
