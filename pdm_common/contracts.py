"""Wire contracts of DESIGN.md section 3: the only place payload shapes are defined.

Every payload that crosses MQTT is parsed here exactly once into a frozen, validated model;
the cores of both services only ever see these objects. Parsing is strict:

* names (site, asset, gateway, metric) match a bounded character set, so they are safe in topics,
  file names and SQL;
* numbers are finite (``NaN`` and ``Infinity`` are refused even though Python's ``json`` accepts them);
* ``ts`` is ISO-8601 with a time zone, or epoch milliseconds; it is normalised to an aware UTC datetime;
* payloads are bounded in bytes before they are decoded, so a hostile publisher cannot make us
  allocate without limit.

This module imports neither river nor paho-mqtt (a test checks it).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from pdm_common.errors import ContractError
from pdm_common.signing import ReplayGuard, SignatureError, canonical_json, sign, verify_fresh

__all__ = [
    "KIND_PATTERN",
    "MAX_ALERT_BYTES",
    "MAX_COMMAND_BYTES",
    "MAX_COMMAND_RECORDS",
    "MAX_EVENT_SEQ",
    "MAX_METRICS",
    "MAX_METRIC_ABS",
    "MAX_TELEMETRY_BYTES",
    "NAME_PATTERN",
    "AgentInfo",
    "AlertEvent",
    "AlertStatus",
    "AssetKind",
    "AssetState",
    "Auth",
    "Command",
    "CommandName",
    "CommandOutcome",
    "CommandRecord",
    "Contributor",
    "DeadLetter",
    "EventType",
    "FaultGuess",
    "GatewayStatus",
    "MetricSeries",
    "ModelInfo",
    "ProbableFault",
    "SensorHealth",
    "SensorStatus",
    "Severity",
    "Snooze",
    "Telemetry",
    "TimeToFailure",
    "decode_json",
    "format_ts",
    "is_valid_name",
    "parse_ts",
    "site_of_alert_id",
]

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""site, asset and gateway names: safe as MQTT topic levels, file names and SQL values (DESIGN.md §2)."""

METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
"""Metric names are snake_case with a unit suffix (``flow_temp_c``); lower case keeps them canonical."""

KIND_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
"""A machine profile's name (``heat_pump``, ``pump`` or a vendor's own, DESIGN.md §9)."""

ALERT_ID_PATTERN = r"^[A-Za-z0-9_.:+-]{1,200}$"
"""``{site}:{asset}:{iso-ts}:{fault}[:{metric}]``; site and asset hold no colon (NAME_PATTERN), so the
first two fields name the owner unambiguously (DESIGN.md §2, "who may speak for what")."""

MAX_TELEMETRY_BYTES = 16 * 1024
"""A full heat-pump sample is ~400 bytes; 16 KiB leaves room for 256 metrics and refuses floods."""

MAX_METRICS = 256
"""More metrics than any asset kind reports; bounds per-asset model size on a 1 GB gateway."""

MAX_ALERT_BYTES = 256 * 1024
"""An alert with recent series for its contributors is ~20 KiB; the bound guards the bridge."""

MAX_COMMAND_BYTES = 4 * 1024
MAX_SERIES_POINTS = 720
"""Half a day at one sample a minute: enough for the ticket plot, bounded for the outbox."""

_EPOCH_MS_MIN = 946_684_800_000  # 2000-01-01: older stamps are a broken clock, not data.
_EPOCH_MS_MAX = 4_102_444_800_000  # 2100-01-01.
_EPOCH_S_MIN, _EPOCH_S_MAX = _EPOCH_MS_MIN // 1000, _EPOCH_MS_MAX // 1000

MAX_METRIC_ABS = 1e12
"""Largest magnitude of a metric value. An energy counter of a 10 MW plant over a century in kWh is
about 1e10; anything beyond 1e12 is a broken encoder, and bounding it keeps every sum, square and
float conversion downstream finite (a 400-digit integer overflowed ``float()``)."""

MAX_EVENT_SEQ = 2**31 - 1
"""Largest ``event_seq``: fits a 32-bit signed column in every store (SQLite, PostgreSQL ``integer``).
An alert emits a handful of events a day; two billion is beyond any alert's life."""

MAX_MAGNITUDE = 1e12
"""Bound of derived numbers on the wire (scores, deviations, expectations, hours)."""

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
AlertId = Annotated[str, StringConstraints(pattern=ALERT_ID_PATTERN)]
FaultCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
KindName = Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
EpochMs = Annotated[int, Field(ge=_EPOCH_MS_MIN, le=_EPOCH_MS_MAX)]
EpochS = Annotated[int, Field(ge=_EPOCH_S_MIN, le=_EPOCH_S_MAX, strict=True)]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:+-]{1,128}$")]
ShortText = Annotated[str, StringConstraints(max_length=500)]


class AssetKind(StrEnum):
    """The built-in machine profiles. The wire carries any :data:`KindName`; a vendor's own kind is
    declared in configuration (DESIGN.md §9), so a field typed ``KindName`` is never limited to these."""

    HEAT_PUMP = "heat_pump"
    PUMP = "pump"


class EventType(StrEnum):
    """The three events of an alert's life that a desk maps onto its own verbs."""

    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


class AlertStatus(StrEnum):
    """Lifecycle state of the alert when the event was emitted (DESIGN.md §5).

    ``reopened`` marks an ``updated`` event sent because a fix was not confirmed after ``serviced``.
    """

    OPEN = "open"
    RECOVERING = "recovering"
    SNOOZED = "snoozed"
    VERIFYING = "verifying"
    REOPENED = "reopened"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """Alert severity, ordered: warning < major < critical."""

    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order warning < major < critical."""
        return ("warning", "major", "critical").index(self.value)


class SensorStatus(StrEnum):
    """Health of one sensor channel as judged by the agent."""

    OK = "ok"
    STUCK = "stuck"
    DRIFT = "drift"
    DROPOUT = "dropout"
    SPIKE = "spike"


class CommandName(StrEnum):
    """Commands a service system may send to an asset's agent."""

    SERVICED = "serviced"
    RESET_BASELINE = "reset_baseline"
    SNOOZE = "snooze"


class CommandOutcome(StrEnum):
    """What the agent did with a command (its audit trail, :class:`CommandRecord`)."""

    ACCEPTED = "accepted"
    REFUSED = "refused"


def parse_ts(value: object) -> datetime:
    """Parse a wire timestamp into an aware UTC datetime.

    Args:
        value: ISO-8601 string with a zone (``Z`` or an offset), epoch milliseconds as an integer
            (or an integral float), or an aware datetime.

    Returns:
        The instant in UTC.

    Raises:
        ValueError: naive timestamps, booleans, out-of-range epochs and unparseable strings.

    >>> parse_ts(1768586531250).isoformat()
    '2026-01-16T18:02:11.250000+00:00'
    >>> parse_ts("2026-01-16T18:02:11.250Z").isoformat()
    '2026-01-16T18:02:11.250000+00:00'
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp has no time zone; send UTC with a trailing Z")
        return value.astimezone(UTC)
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
            raise ValueError("epoch timestamp must be whole milliseconds")
        ms = int(value)
        if not _EPOCH_MS_MIN <= ms <= _EPOCH_MS_MAX:
            raise ValueError(f"epoch milliseconds {ms} outside 2000..2100; is the clock or unit wrong?")
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    if isinstance(value, str):
        if len(value) > 40:
            raise ValueError("timestamp text longer than 40 characters")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise ValueError("timestamp has no time zone; send UTC with a trailing Z")
        if not _EPOCH_S_MIN <= parsed.timestamp() <= _EPOCH_S_MAX:
            raise ValueError(f"timestamp {value!r} outside 2000..2100; is the clock wrong?")
        return parsed.astimezone(UTC)
    raise ValueError("timestamp must be ISO-8601 text or epoch milliseconds")


def format_ts(value: datetime) -> str:
    """Format an aware datetime as ISO-8601 UTC with milliseconds and a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(token: str) -> Any:
    raise ContractError("non_finite", f"JSON constant {token} is not a finite number")


def decode_json(payload: bytes, *, max_bytes: int) -> Any:
    """Decode a bounded UTF-8 JSON payload, refusing NaN and Infinity.

    Raises:
        ContractError: with reason ``oversize``, ``not_utf8``, ``not_json`` or ``non_finite``.
    """
    if len(payload) > max_bytes:
        raise ContractError("oversize", f"payload is {len(payload)} bytes, limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError("not_utf8", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ContractError:
        raise
    except RecursionError:
        raise ContractError("not_json", "JSON nested too deeply") from None
    except ValueError as exc:
        raise ContractError("not_json", f"payload is not JSON: {exc}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class _Wire(BaseModel):
    """Base of every wire model: frozen, no unknown fields, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, str_max_length=2000)

    @classmethod
    def from_json(cls, payload: bytes, *, max_bytes: int) -> Self:
        """Parse and validate a JSON payload.

        Raises:
            ContractError: ``oversize``, ``not_utf8``, ``not_json``, ``non_finite``, ``not_object``
                or ``invalid_field`` with the offending fields named.
        """
        raw = decode_json(payload, max_bytes=max_bytes)
        if not isinstance(raw, dict):
            raise ContractError("not_object", f"payload is a JSON {type(raw).__name__}, expected an object")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ContractError("invalid_field", _describe(exc)) from None

    def to_json(self) -> bytes:
        """Serialise to compact UTF-8 JSON, leaving out fields that are None."""
        return self.model_dump_json(exclude_none=True).encode()


class _Timestamped(_Wire):
    @field_validator("*", mode="before")
    @classmethod
    def _timestamps(cls, value: object, info: Any) -> object:
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation in (datetime, datetime | None) and value is not None:
            return parse_ts(value)
        return value

    @field_serializer("*", when_used="json")
    def _ser(self, value: object) -> object:
        if isinstance(value, datetime):
            return format_ts(value)
        return value


MetricValue = float | bool | None


class Telemetry(_Timestamped):
    """One sample of one asset (topic ``{prefix}/{site}/{asset}/telemetry``).

    ``site`` and ``asset`` come from the topic, not the payload; :meth:`to_json` leaves them out.
    A metric value of ``None`` means the sensor was absent for this sample; booleans are
    operating-state flags such as ``defrost``.
    """

    site: Name
    asset: Name
    ts: datetime
    seq: Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)]
    kind: KindName
    metrics: dict[MetricName, MetricValue] = Field(min_length=1, max_length=MAX_METRICS)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_values(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        clean: dict[object, MetricValue] = {}
        for name, v in value.items():
            if v is None or isinstance(v, bool):
                clean[name] = v
            elif isinstance(v, int | float):
                # Compare before converting: float() of a huge integer raises OverflowError.
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"metric {name!r} is not finite")
                if not -MAX_METRIC_ABS <= v <= MAX_METRIC_ABS:
                    raise ValueError(f"metric {name!r} magnitude beyond {MAX_METRIC_ABS:g}")
                clean[name] = float(v)
            else:
                raise ValueError(f"metric {name!r} must be a number, boolean or null, got {type(v).__name__}")
        return clean

    @classmethod
    def from_wire(cls, site: str, asset: str, payload: bytes) -> Telemetry:
        """Parse a telemetry payload received on ``site``/``asset``'s topic.

        Raises:
            ContractError: the payload breaks the contract; ``reason`` says how.
        """
        raw = decode_json(payload, max_bytes=MAX_TELEMETRY_BYTES)
        if not isinstance(raw, dict):
            raise ContractError("not_object", f"payload is a JSON {type(raw).__name__}, expected an object")
        for key in ("site", "asset"):
            if key in raw:
                raise ContractError("invalid_field", f"{key}: comes from the topic, not the payload")
        try:
            return cls.model_validate({**raw, "site": site, "asset": asset})
        except ValidationError as exc:
            raise ContractError("invalid_field", _describe(exc)) from None

    def to_json(self) -> bytes:
        """Serialise the payload as published on the telemetry topic (without site and asset)."""
        return self.model_dump_json(exclude={"site", "asset"}).encode()

    def numeric(self) -> dict[str, float]:
        """The metrics that carry a number this sample (booleans and absent sensors left out)."""
        return {k: v for k, v in self.metrics.items() if isinstance(v, float)}

    def flags(self) -> dict[str, bool]:
        """The operating-state flags of this sample."""
        return {k: v for k, v in self.metrics.items() if isinstance(v, bool)}


class FaultGuess(_Wire):
    """One candidate fault with the classifier's confidence."""

    code: FaultCode
    confidence: Unit


class ProbableFault(FaultGuess):
    """The most likely fault and the runners-up. ``sensor_fault`` is never a machine fault."""

    alternatives: list[FaultGuess] = Field(default_factory=list, max_length=5)


class Contributor(_Wire):
    """A metric that pushed the score, with what was expected and how far off it is (in sigmas)."""

    metric: MetricName
    # Defaults matter: to_json() leaves out None fields, and the payload must still parse.
    value: Finite | None = None
    expected: Finite | None = None
    deviation: Finite


class TimeToFailure(_Wire):
    """Hours until the failure criterion is crossed at the current trend; p10 is the pessimistic end."""

    p50: Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
    p10: Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
    criterion: ShortText | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.p10 > self.p50:
            raise ValueError("p10 must not exceed p50")
        return self


class SensorHealth(_Wire):
    """The agent's verdict on one sensor channel."""

    metric: MetricName
    status: SensorStatus


class ModelInfo(_Wire):
    """Which model produced the alert and how much it had seen."""

    name: Annotated[str, StringConstraints(max_length=64)]
    version: Annotated[str, StringConstraints(max_length=64)]
    samples_seen: Count


class AgentInfo(_Wire):
    """The gateway and agent version that raised the alert."""

    gateway: Name
    version: Annotated[str, StringConstraints(max_length=64)]


class MetricSeries(_Timestamped):
    """Recent values of one metric, for the ticket plot: ``points`` are ``[epoch_ms, value]``."""

    metric: MetricName
    expected: Finite | None = None
    points: list[tuple[EpochMs, Finite]] = Field(max_length=MAX_SERIES_POINTS)


class Auth(_Wire):
    """The Standard Webhooks signature of an MQTT payload (:mod:`pdm_common.signing`).

    ``key_id`` names the key (a gateway's own, or a command sender's); ``msg_id`` and ``ts``
    (epoch seconds) are signed with the payload's canonical JSON without ``auth``.
    """

    key_id: Name
    msg_id: MessageId
    ts: EpochS
    sig: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _Signable(_Timestamped):
    """A payload that may carry an :class:`Auth` signature."""

    auth: Auth | None = None

    def signed_body(self) -> bytes:
        """The bytes the signature covers: the canonical JSON of the payload without ``auth``.

        Computed from the parsed model, so whitespace, key order and equivalent timestamp spellings
        on the wire do not matter; what is signed is what the receiver acts on.
        """
        return canonical_json(json.loads(self.model_copy(update={"auth": None}).to_json()))

    def signed(self, *, key_id: str, secret: str, msg_id: str, now_s: int) -> Self:
        """A copy carrying a signature under ``secret`` (named ``key_id``), made at ``now_s``."""
        sig = sign(secret, msg_id, now_s, self.signed_body())
        return self.model_copy(update={"auth": Auth(key_id=key_id, msg_id=msg_id, ts=now_s, sig=sig)})

    def verify_auth(
        self,
        keys: Mapping[str, str | list[str]],
        *,
        now_s: float,
        tolerance_s: float | None,
        replay: ReplayGuard | None = None,
    ) -> str:
        """Check the signature against the key its ``key_id`` names; return that ``key_id``.

        Raises:
            SignatureError: ``missing`` (no ``auth``), ``unknown_key``, ``mismatch``, ``stale``,
                ``replayed`` or ``malformed``.
        """
        if self.auth is None:
            raise SignatureError("missing", "payload carries no auth signature")
        secret = keys.get(self.auth.key_id)
        if secret is None:
            raise SignatureError("unknown_key", f"no key configured for key_id {self.auth.key_id!r}")
        verify_fresh(secret, self.auth.msg_id, self.auth.ts, self.signed_body(), self.auth.sig,
                     now_s=now_s, tolerance_s=tolerance_s, replay=replay)
        return self.auth.key_id


def site_of_alert_id(alert_id: str) -> tuple[str, str] | None:
    """The ``(site, asset)`` an alert id names, or None when it names none.

    >>> site_of_alert_id("oslo-north:hp-0042:2026-01-14T03:10:00Z:refrigerant_leak")
    ('oslo-north', 'hp-0042')
    """
    site, _, rest = alert_id.partition(":")
    asset, _, tail = rest.partition(":")
    if not tail or not is_valid_name(site) or not is_valid_name(asset):
        return None
    return site, asset


class Snooze(_Timestamped):
    """Who snoozed an alert and until when (carried by the ``updated`` event with status ``snoozed``).

    ``issued_by`` is the person or system the command named (``desk:zendesk:agent-4711``); ``key_id``
    the key that signed it (None only on an agent that accepts unsigned commands).
    """

    until: datetime
    issued_by: ShortText | None = None
    key_id: Name | None = None


class AlertEvent(_Signable):
    """One event in the life of an alert (topic ``{prefix}/{site}/{asset}/alert``, QoS 1).

    ``alert_id`` is stable for the alert's life and is the dedup key downstream; it begins with
    ``{site}:{asset}:``, and a payload whose ``site``/``asset`` disagree with it is refused. ``event_seq``
    rises by one per event; consumers drop events at or below the last seq they applied. ``auth``, when
    present, is the gateway's signature (:class:`Auth`).
    """

    alert_id: AlertId
    event: EventType
    event_seq: Annotated[int, Field(ge=1, le=MAX_EVENT_SEQ)]
    site: Name
    asset: Name
    kind: KindName
    severity: Severity
    score: Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
    first_seen: datetime
    last_seen: datetime
    emitted_at: datetime | None = None
    status: AlertStatus | None = None
    note: ShortText | None = None
    probable_fault: ProbableFault
    contributors: list[Contributor] = Field(default_factory=list, max_length=20)
    time_to_failure_h: TimeToFailure | None = None
    sensor_health: list[SensorHealth] = Field(default_factory=list, max_length=MAX_METRICS)
    operating_context: dict[MetricName, Finite] = Field(default_factory=dict, max_length=32)
    recent: list[MetricSeries] = Field(default_factory=list, max_length=8)
    snooze: Snooze | None = None
    model: ModelInfo
    agent: AgentInfo

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        if self.event is EventType.OPENED and self.event_seq != 1:
            raise ValueError("an opened event must have event_seq 1")
        if site_of_alert_id(self.alert_id) != (self.site, self.asset):
            raise ValueError(f"alert_id must begin with '{self.site}:{self.asset}:' (the alert's own site and asset)")
        return self

    @property
    def is_sensor_fault(self) -> bool:
        """True when the alert is about a sensor, not the machine."""
        return self.probable_fault.code == "sensor_fault"


MAX_COMMAND_RECORDS = 16
"""Commands kept in an asset's retained state: the last few weeks of a desk's snoozes and services."""


class CommandRecord(_Timestamped):
    """One command the agent received for an asset, accepted or refused with the reason (audit trail).

    ``reason`` is the dead-letter reason of a refusal (``signature_missing``, ``snooze_beyond_horizon``
    …, docs/contracts.md); ``key_id`` the key that verified, ``issued_by`` who the command named.
    """

    at: datetime
    command: CommandName
    outcome: CommandOutcome
    reason: Annotated[str, StringConstraints(max_length=64)] | None = None
    key_id: Name | None = None
    issued_by: ShortText | None = None
    alert_id: AlertId | None = None
    until: datetime | None = None
    msg_id: MessageId | None = None

    @classmethod
    def of(cls, cmd: Command, *, at: datetime, key_id: str | None, reason: str | None) -> CommandRecord:
        """The audit entry of ``cmd``: accepted when ``reason`` is None, else refused for ``reason``.

        ``key_id`` is the key that verified; without one, the key the command claims (if any) is kept.
        """
        return cls(
            at=at, command=cmd.command,
            outcome=CommandOutcome.ACCEPTED if reason is None else CommandOutcome.REFUSED, reason=reason,
            key_id=key_id if key_id is not None else (cmd.auth.key_id if cmd.auth else None),
            issued_by=cmd.issued_by, alert_id=cmd.alert_id, until=cmd.until,
            msg_id=cmd.auth.msg_id if cmd.auth else None,
        )


class AssetState(_Timestamped):
    """Retained per-asset state (topic ``{prefix}/{site}/{asset}/state``).

    ``commands`` is the asset's audit trail: its most recent commands (at most
    :data:`MAX_COMMAND_RECORDS`), accepted and refused, newest last.
    """

    site: Name
    asset: Name
    kind: KindName
    ts: datetime
    health_score: Unit
    open_alerts: list[AlertId] = Field(default_factory=list, max_length=64)
    warmup_progress: Unit
    samples_seen: Count
    sensor_health: list[SensorHealth] = Field(default_factory=list, max_length=MAX_METRICS)
    commands: list[CommandRecord] = Field(default_factory=list, max_length=MAX_COMMAND_RECORDS)


class Command(_Signable):
    """An instruction to the agent for one asset (topic ``{prefix}/{site}/{asset}/cmd``).

    ``site`` and ``asset`` name the target inside the signed body, and the agent refuses a command
    whose target is not its topic's: a signed command cannot be replayed to another asset or another
    gateway that trusts the same sender key. ``issued_by`` names the person or system behind it
    (audited by the agent); ``auth`` is the sender's signature (:class:`Auth`), checked against the
    agent's configured command keys.
    """

    command: CommandName
    site: Name
    asset: Name
    ts: datetime | None = None
    alert_id: AlertId | None = None
    until: datetime | None = None
    issued_by: ShortText | None = None
    note: ShortText | None = None

    @model_validator(mode="after")
    def _snooze_needs_until(self) -> Self:
        if self.command is CommandName.SNOOZE and self.until is None:
            raise ValueError("snooze needs 'until' (ISO-8601 UTC or epoch ms)")
        return self


DEADLETTER_PAYLOAD_MAX = 8 * 1024
"""Dead letters carry at most this much of the original payload, so one flood cannot amplify."""


class DeadLetter(_Timestamped):
    """A refused message with the reason (topic ``{prefix}/{site}/{asset}/deadletter``)."""

    # base64 of DEADLETTER_PAYLOAD_MAX bytes is ~11 KiB, beyond the default string bound.
    model_config = ConfigDict(str_max_length=16 * 1024)

    reason: Annotated[str, StringConstraints(max_length=64)]
    detail: ShortText
    topic: Annotated[str, StringConstraints(max_length=1024)]
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    payload_bytes: Annotated[int, Field(ge=0)]
    truncated: bool
    received_at: datetime

    @classmethod
    def build(cls, *, reason: str, detail: str, topic: str, payload: bytes, received_at: datetime) -> DeadLetter:
        """Wrap a refused payload; non-UTF-8 bodies are base64-encoded, long ones truncated."""
        kept = payload[:DEADLETTER_PAYLOAD_MAX]
        try:
            text, encoding = kept.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        return cls(
            reason=reason,
            detail=detail[:500],
            topic=topic[:1024],
            payload=text,
            payload_encoding=encoding,
            payload_bytes=len(payload),
            truncated=len(payload) > DEADLETTER_PAYLOAD_MAX,
            received_at=received_at,
        )


class GatewayStatus(_Timestamped):
    """Retained gateway birth/will (topic ``{prefix}/{site}/gateway/{gateway}/status``)."""

    status: Literal["online", "offline"]
    gateway: Name
    version: Annotated[str, StringConstraints(max_length=64)]
    config_hash: Annotated[str, StringConstraints(max_length=64)] | None = None
    ts: datetime | None = None
    health: dict[str, Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=dict, max_length=32)


_SAFE_TOPIC_LEVEL = re.compile(NAME_PATTERN)


def is_valid_name(value: str) -> bool:
    """True when ``value`` is a valid site, asset or gateway name."""
    return bool(_SAFE_TOPIC_LEVEL.match(value))
