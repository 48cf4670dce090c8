"""The pure ticket-mapping core: one :class:`AlertEvent` plus its registry record becomes a :class:`Ticket`.

No I/O and no clock: the caller passes ``now``. Desk adapters translate a Ticket into their own
fields and verbs; everything a technician, a dispatcher or the customer reads is decided here, once,
for all desks.

Two audiences, two texts, never mixed:

* ``public_message`` is for the customer (their language, their time zone, contact hours, the
  pessimistic estimate) and is built only from facts the customer may see (:mod:`cloud_bridge.messages`);
  it is None for events the customer is not told about (updates, acknowledgements).
* ``internal_note`` is for the technician and the dispatcher: the full brief on open and reopen, a
  short note otherwise — with the contact details, vulnerable occupants, parts and checks.

Every text carries the event's key (:attr:`Ticket.public_marker`, :attr:`Ticket.internal_marker`), so
an adapter retrying an event can look for it on the desk and never posts a note twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.assets import AssetRecord
from cloud_bridge.fault_actions import UNCLASSIFIED, FaultActions
from cloud_bridge.messages import Language, MessageFacts, MessageKind, customer_message
from cloud_bridge.urgency import CalendarPolicy, Priority, assess, contact_deadline
from cloud_bridge.vocabulary import BUILTIN_VOCABULARY, MetricWords, Vocabulary
from pdm_common.contracts import AlertEvent, AlertStatus, Contributor, EventType, SensorStatus, format_ts, parse_ts

__all__ = [
    "AlertHistory",
    "Customer",
    "MappingContext",
    "Resolution",
    "Ticket",
    "TicketAction",
    "action_for",
    "case_reference",
    "map_alert",
    "resolution_of",
    "sla_deadline",
]

FIX_CONFIRMED_NOTE = "fix confirmed"
BASELINE_RESET_NOTE = "baseline reset by operator"
"""The agent's notes on a ``resolved`` event (edge_agent/lifecycle/machine.py): a confirmed fix after
``serviced``, an operator's ``reset_baseline``; a resolve without a note is a self-recovery."""

TTF_RESPONSE_SHARE = 0.5
"""[E] Respond within half the pessimistic (p10) time to failure, so a visit still fits before it."""

_SNOOZE_NOTE = re.compile(r"snoozed until (?P<until>\S+)(?: by (?P<who>.+))?")


class TicketAction(StrEnum):
    """What the desk should do; each adapter maps these onto its own verbs (docs/bridge.md, lifecycles)."""

    OPEN = "open"
    UPDATE = "update"
    ACKNOWLEDGE = "acknowledge"
    VERIFY = "verify"
    REOPEN = "reopen"
    RESOLVE = "resolve"


class Resolution(StrEnum):
    """Why an alert resolved; each has its own customer message."""

    FIXED = "fixed"
    RECOVERED = "recovered"
    RESET = "reset"


def action_for(alert: AlertEvent) -> TicketAction:
    """The desk action an alert event calls for.

    ``updated`` with status ``reopened`` ("fix not confirmed") reopens; ``verifying`` (serviced, the
    agent verifies the fix) parks the ticket awaiting confirmation; ``snoozed`` means someone took the
    alert in hand, which acknowledges it; any other update (``open``, ``recovering``) is a note.
    """
    if alert.event is EventType.OPENED:
        return TicketAction.OPEN
    if alert.event is EventType.RESOLVED:
        return TicketAction.RESOLVE
    if alert.status is AlertStatus.REOPENED:
        return TicketAction.REOPEN
    if alert.status is AlertStatus.VERIFYING:
        return TicketAction.VERIFY
    if alert.status is AlertStatus.SNOOZED:
        return TicketAction.ACKNOWLEDGE
    return TicketAction.UPDATE


def resolution_of(alert: AlertEvent) -> Resolution | None:
    """Why a ``resolved`` event resolved (None for other events)."""
    if alert.event is not EventType.RESOLVED:
        return None
    if alert.note == FIX_CONFIRMED_NOTE:
        return Resolution.FIXED
    if alert.note == BASELINE_RESET_NOTE:
        return Resolution.RESET
    return Resolution.RECOVERED


def case_reference(alert_id: str) -> str:
    """The short case reference of an alert, as the customer sees it.

    >>> case_reference("oslo-north:hp-0042:2026-01-14T03:10:00Z:refrigerant_leak")
    'PDM-0BC21DCB'
    """
    return "PDM-" + hashlib.sha256(alert_id.encode()).hexdigest()[:8].upper()


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Everything the mapping needs besides the alert: tables, calendar and promises."""

    fault_actions: FaultActions
    calendar: CalendarPolicy
    sla_hours: dict[str, float]
    dashboard_url: str
    default_language: Language = "en"
    vocabulary: Vocabulary = BUILTIN_VOCABULARY
    """Words of the built-in and the declared machine kinds (``kinds_path`` / ``[kinds]``)."""


@dataclass(frozen=True, slots=True)
class AlertHistory:
    """What the bridge remembers about earlier events of the alert (from its outbox)."""

    serviced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Customer:
    """The customer as a party of the ticket: who is told, in which language and time zone."""

    name: str
    email: str | None
    phone: str | None
    language: Language
    zone: ZoneInfo


def sla_deadline(opened_at: datetime, priority: Priority, ctx: MappingContext, asset: AssetRecord | None,
                 p10_h: float | None = None) -> datetime:
    """When the response is due: the priority's hours, capped by the asset's contract SLA and by half
    the pessimistic time to failure (:data:`TTF_RESPONSE_SHARE`)."""
    hours = ctx.sla_hours[priority.value]
    if asset is not None and asset.sla_hours is not None:
        hours = min(hours, asset.sla_hours)
    if p10_h is not None:
        hours = min(hours, max(1.0, TTF_RESPONSE_SHARE * p10_h))
    return opened_at + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A desk-independent ticket operation for one alert event."""

    dedup_key: str
    event_seq: int
    action: TicketAction
    resolution: Resolution | None
    site: str
    asset: str
    title: str
    priority: Priority
    urgency_reasons: tuple[str, ...]
    severity: str
    fault_code: str
    fault_name: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]
    contributors: tuple[Contributor, ...]
    time_to_failure_h: tuple[float, float] | None
    sensor_issues: tuple[str, ...]
    parts: tuple[str, ...]
    checks: tuple[str, ...]
    record: AssetRecord | None
    customer: Customer | None
    customer_language: Language
    public_message: str | None
    internal_note: str
    brief: str
    dashboard_url: str
    opened_at: datetime
    sla_deadline: datetime
    contact_by: datetime | None
    event_at: datetime
    note: str | None
    gateway: str
    reference: str
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None

    @property
    def public_marker(self) -> str:
        """The text that identifies this event's customer message on the desk (its case reference)."""
        return f"{self.reference}/{self.event_seq}.)"

    @property
    def internal_marker(self) -> str:
        """The text that identifies this event's internal note on the desk."""
        return f"[pdm-note {self.reference}/{self.event_seq}]"

    @property
    def tells_customer(self) -> bool:
        """True when this event has a customer-facing message."""
        return self.public_message is not None

    def as_json(self) -> dict[str, Any]:
        """A structured, JSON-ready view (the generic webhook body, PagerDuty's custom details)."""
        rec = self.record
        return {
            "dedup_key": self.dedup_key,
            "event_seq": self.event_seq,
            "action": self.action.value,
            "resolution": None if self.resolution is None else self.resolution.value,
            "reference": self.reference,
            "title": self.title,
            "priority": self.priority.value,
            "urgency_reasons": list(self.urgency_reasons),
            "severity": self.severity,
            "site": self.site,
            "asset": self.asset,
            "customer": None if rec is None else {
                "name": rec.customer, "id": rec.customer_id, "address": rec.address,
                "contact": rec.contact.model_dump(exclude_none=True), "language": self.customer_language,
                "vulnerable_occupants": list(rec.vulnerable_occupants),
            },
            "asset_info": None if rec is None else {
                "kind": rec.kind, "model": rec.model, "serial": rec.serial,
                "install_date": rec.install_date.isoformat(),
                "warranty_until": rec.warranty_until.isoformat() if rec.warranty_until else None,
                "under_warranty": rec.under_warranty(self.event_at.date()),
                "service_history": [{"date": v.date.isoformat(), "work": v.work} for v in rec.service_history],
            },
            "diagnosis": {
                "probable_fault": self.fault_code, "fault_name": self.fault_name, "confidence": self.confidence,
                "alternatives": [{"fault_name": c, "confidence": p} for c, p in self.alternatives],
                "contributors": [c.model_dump() for c in self.contributors],
                "time_to_failure_h": None if self.time_to_failure_h is None else {
                    "p50": self.time_to_failure_h[0], "p10": self.time_to_failure_h[1]},
                "sensor_issues": list(self.sensor_issues),
            },
            "parts": list(self.parts),
            "checks": list(self.checks),
            "customer_message": self.public_message,
            "internal_note": self.internal_note,
            "links": {"dashboard": self.dashboard_url},
            "sla_deadline": format_ts(self.sla_deadline),
            "contact_by": None if self.contact_by is None else format_ts(self.contact_by),
            "snoozed_until": None if self.snoozed_until is None else format_ts(self.snoozed_until),
            "snoozed_by": self.snoozed_by,
            "note": self.note,
        }


def _local(when: datetime, zone: ZoneInfo) -> str:
    """``Wed 14 Jan 2026 04:10 CET``: what a technician reads on a phone."""
    return when.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


def _day(on: date) -> str:
    return on.strftime("%d %b %Y")


def _contributor_line(c: Contributor, words: MetricWords) -> str:
    if c.value is None:
        return f"- {words.name}: no reading (sensor absent)"
    line = f"- {words.name}: {words.value(c.value)}"
    if c.expected is not None:
        diff = c.value - c.expected
        pct = f", {diff / c.expected:+.0%}" if abs(c.expected) > 1e-9 else ""
        sign = "+" if diff >= 0 else "-"
        line += f" (expected {words.value(c.expected)}: {sign}{words.value(abs(diff))}{pct})"
    return line


def _warranty(rec: AssetRecord, on: date) -> str:
    if rec.warranty_until is None:
        return "no warranty on record"
    if rec.under_warranty(on):
        return f"under warranty until {_day(rec.warranty_until)} ({(rec.warranty_until - on).days} days left)"
    return f"warranty EXPIRED on {_day(rec.warranty_until)}: the visit is chargeable"


def _header(alert: AlertEvent, action: TicketAction, resolution: Resolution | None) -> str:
    words = {
        TicketAction.OPEN: "New alert",
        TicketAction.UPDATE: "Update" if alert.status is not AlertStatus.RECOVERING else "Recovering",
        TicketAction.ACKNOWLEDGE: "Snoozed",
        TicketAction.VERIFY: "Serviced: the fix is being verified",
        TicketAction.REOPEN: "REOPENED: fix not confirmed after service",
        TicketAction.RESOLVE: {Resolution.FIXED: "Resolved: fix confirmed by the readings",
                               Resolution.RECOVERED: "Resolved: readings back to normal without a repair",
                               Resolution.RESET: "Resolved: baseline reset by an operator"}.get(
                                   resolution or Resolution.RECOVERED, "Resolved"),
    }[action]
    detail = f": {alert.note}" if alert.note and action is not TicketAction.RESOLVE else ""
    return f"{words} (event {alert.event_seq}, severity {alert.severity.value}){detail}"


def _snooze(alert: AlertEvent) -> tuple[datetime | None, str | None]:
    """Until when and by whom the alert is snoozed: the event's ``snooze``, else its note."""
    if alert.snooze is not None:
        return alert.snooze.until, alert.snooze.issued_by
    if alert.status is not AlertStatus.SNOOZED or not alert.note:
        return None, None
    found = _SNOOZE_NOTE.search(alert.note)
    if found is None:
        return None, None
    try:
        until = parse_ts(found.group("until"))
    except ValueError:
        return None, found.group("who")
    return until, found.group("who")


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the internal texts are built from (computed once in :func:`map_alert`)."""

    alert: AlertEvent
    record: AssetRecord | None
    zone: ZoneInfo
    priority: Priority
    reasons: tuple[str, ...]
    deadline: datetime
    contact_by: datetime | None
    fault_en: str
    alternatives: tuple[tuple[str, float], ...]
    parts: tuple[str, ...]
    checks: tuple[str, ...]
    history: AlertHistory
    snoozed: tuple[datetime | None, str | None]
    vocabulary: Vocabulary

    def words(self, metric: str) -> MetricWords:
        """A metric of this alert's asset in words, with its unit."""
        return self.vocabulary.metric_words(metric, self.alert.kind, self.alert.asset)


def _diagnosis_lines(f: _Facts) -> list[str]:
    a = f.alert
    lines = [f"Priority {f.priority.value} ({f.priority.words}) because:"]
    lines += [f"- {r}" for r in f.reasons]
    lines += ["", f"Respond by: {_local(f.deadline, f.zone)}"]
    if f.contact_by is not None:
        lines.append(f"Customer told to expect a call by: {_local(f.contact_by, f.zone)}")
    until, who = f.snoozed
    if until is not None or who is not None:
        when = _local(until, f.zone) if until is not None else "(time not given)"
        lines.append(f"Snoozed until {when}" + (f" by {who}" if who else ""))
    if f.history.serviced_at is not None:
        lines.append(f"Serviced: {_local(f.history.serviced_at, f.zone)}")
    lines += ["", "Diagnosis:",
              f"- probable fault: {f.fault_en}" + ("" if a.probable_fault.code == UNCLASSIFIED
                                                  else f" ({a.probable_fault.confidence:.0%} confidence)")]
    lines += [f"- alternative: {name} ({conf:.0%})" for name, conf in f.alternatives]
    ttf = a.time_to_failure_h
    if ttf is not None and not a.is_sensor_fault:
        criterion = ttf.criterion or _criterion(f)
        until_what = f" ({criterion})" if criterion else ""
        lines.append(f"- may fail within {ttf.p10:.0f} h (pessimistic), about {ttf.p50:.0f} h (median){until_what}")
    lines += [_contributor_line(c, f.words(c.metric)) for c in a.contributors]
    lines += [f"- sensor {f.words(h.metric).name}: {h.status.value}" for h in a.sensor_health
              if h.status is not SensorStatus.OK]
    lines.append(f"- first seen {_local(a.first_seen, f.zone)}, last seen {_local(a.last_seen, f.zone)}")
    return lines


def _criterion(f: _Facts) -> str | None:
    threshold = f.vocabulary.failure_threshold(f.alert.probable_fault.code, f.alert.kind)
    if threshold is None:
        return None
    words = f.words(threshold.metric)
    return f"{threshold.description}: {words.name} {threshold.direction} {words.value(threshold.value)}"


def _quoted(public: str) -> str:
    """The customer message as quoted in an internal note: without its case reference, which marks only the
    public comment itself (a retry looks for it to know whether the public comment landed)."""
    return public.rsplit(" (", 1)[0]


def _brief(f: _Facts, summary: str, public: str | None, *, language: Language, dashboard: str, ref: str) -> str:
    a, rec = f.alert, f.record
    lines = [summary, "", *_diagnosis_lines(f)]
    lines += ["", "Bring:"] + ([f"- {p}" for p in f.parts] or ["- (no specific parts for this fault)"])
    lines += ["", "Check:"] + [f"- {c}" for c in f.checks]
    if rec is not None:
        contact = rec.contact
        lines += ["", "Customer:", f"- {rec.customer}", f"- {rec.address}",
                  f"- contact: {contact.name}" + "".join(f", {x}" for x in (contact.phone, contact.email) if x)]
        if rec.vulnerable_occupants:
            lines.append("- vulnerable occupants: " + ", ".join(rec.vulnerable_occupants))
        if rec.production_critical:
            lines.append("- production line with no spare")
        lines += ["", "Asset:", f"- {rec.model}, serial {rec.serial}, installed {_day(rec.install_date)}",
                  f"- {_warranty(rec, a.last_seen.date())}"]
        lines += [f"- {_day(v.date)}: {v.work}" for v in rec.service_history]
    else:
        lines += ["", "Customer: unknown: this asset is not in the asset registry; nobody was told."]
    if public is not None:
        lines += ["", f"Message sent to the customer ({language}):", _quoted(public)]
    lines += ["", f"Dashboard: {dashboard}", f"Alert: {a.alert_id}", f"[pdm-note {ref}/{a.event_seq}]"]
    return "\n".join(lines)


def _short_note(f: _Facts, header: str, public: str | None, *, language: Language, ref: str) -> str:
    lines = [header, "", *_diagnosis_lines(f)]
    if public is not None:
        lines += ["", f"Message sent to the customer ({language}):", _quoted(public)]
    lines += ["", f"[pdm-note {ref}/{f.alert.event_seq}]"]
    return "\n".join(lines)


_MESSAGE_KIND: dict[TicketAction, MessageKind] = {TicketAction.OPEN: "open", TicketAction.REOPEN: "reopen"}
_RESOLVE_KIND: dict[Resolution, MessageKind] = {Resolution.FIXED: "fixed", Resolution.RECOVERED: "recovered",
                                                Resolution.RESET: "reset"}


def map_alert(alert: AlertEvent, record: AssetRecord | None, *, now: datetime, ctx: MappingContext,
              history: AlertHistory | None = None) -> Ticket:
    """Map an alert event and its asset's registry record onto a desk-independent ticket.

    Args:
        alert: the validated alert event.
        record: the asset's registry record, or None when the registry does not know the asset.
        now: the current instant; decides "weekend ahead", contact hours and friends.
        ctx: fault table, calendar, SLA hours and link template.
        history: what the bridge remembers of the alert's earlier events.

    Returns:
        The ticket operation: title, priority and reasons, the customer message (or None), the
        internal note, and the structured diagnosis, parts and checks.
    """
    history = history or AlertHistory()
    action = action_for(alert)
    resolution = resolution_of(alert)
    urgency = assess(alert, record, now=now, calendar=ctx.calendar)
    language: Language = (record.language if record and record.language else None) or ctx.default_language
    zone = ZoneInfo(record.timezone) if record is not None and record.timezone else ctx.calendar.zone
    vocabulary = ctx.vocabulary
    fault = vocabulary.fault_action(alert.kind, alert.probable_fault.code, ctx.fault_actions)
    fault_en = fault.name_in("en")
    kind_en = vocabulary.kind_word(alert.kind, "en")
    equipment_en = f"{record.model} {kind_en}" if record else kind_en
    ttf = alert.time_to_failure_h
    p10 = None if ttf is None or alert.is_sensor_fault else ttf.p10
    # The promise runs from detection; a reopen ("fix not confirmed") starts a new one.
    event_at = alert.emitted_at or alert.last_seen
    promise_from = event_at if action is TicketAction.REOPEN else alert.first_seen
    deadline = sla_deadline(promise_from, urgency.priority, ctx, record, p10)
    ref = case_reference(alert.alert_id)
    tells = action in _MESSAGE_KIND or (action is TicketAction.RESOLVE and resolution is not None)
    contact_by = (contact_deadline(deadline, now, urgency.priority, zone, ctx.calendar)
                  if action in _MESSAGE_KIND else None)
    public: str | None = None
    if record is not None and tells:
        kind: MessageKind = _MESSAGE_KIND.get(action) or _RESOLVE_KIND[resolution or Resolution.RECOVERED]
        facts = MessageFacts(
            kind=kind, customer_name=record.contact.name,
            equipment=equipment_en if language == "en" else vocabulary.kind_word(alert.kind, language),
            fault_name=fault.name_in(language), sensor_fault=alert.is_sensor_fault, contact_by=contact_by,
            zone=zone, fails_within_h=p10, reference=f"{ref}/{alert.event_seq}",
            unclassified=alert.probable_fault.code == UNCLASSIFIED,
        )
        public = customer_message(facts, language)
    alternatives = tuple((vocabulary.fault_action(alert.kind, a.code, ctx.fault_actions).name_in("en"), a.confidence)
                         for a in alert.probable_fault.alternatives)
    f = _Facts(alert=alert, record=record, zone=zone, priority=urgency.priority, reasons=urgency.reasons,
               deadline=deadline, contact_by=contact_by, fault_en=fault_en, alternatives=alternatives,
               parts=tuple(fault.parts), checks=tuple(fault.checks), history=history, snoozed=_snooze(alert),
               vocabulary=vocabulary)
    title = f"{alert.asset} ({equipment_en}): {fault_en}: {urgency.priority.words} ({urgency.priority.value})"
    if action is TicketAction.RESOLVE:
        title = f"Resolved: {title}"
    summary = (f"Abnormal operation of {equipment_en} {alert.asset} at site {alert.site}: no known fault signature "
               f"fits the readings (severity {alert.severity.value})." if alert.probable_fault.code == UNCLASSIFIED
               else f"Probable {fault_en} on {equipment_en} {alert.asset} at site {alert.site} "
               f"({alert.probable_fault.confidence:.0%} confidence, severity {alert.severity.value}).")
    dashboard = ctx.dashboard_url.format(site=alert.site, asset=alert.asset)
    brief = _brief(f, summary, public, language=language, dashboard=dashboard, ref=ref)
    header = _header(alert, action, resolution)
    internal = (f"{header}\n\n{brief}" if action in (TicketAction.OPEN, TicketAction.REOPEN)
                else _short_note(f, header, public, language=language, ref=ref))
    customer = None if record is None else Customer(
        name=record.contact.name, email=record.contact.email, phone=record.contact.phone, language=language, zone=zone)
    until, who = f.snoozed
    issues = tuple(f"{h.metric}: {h.status.value}" for h in alert.sensor_health if h.status is not SensorStatus.OK)
    return Ticket(
        dedup_key=alert.alert_id, event_seq=alert.event_seq, action=action, resolution=resolution,
        site=alert.site, asset=alert.asset, title=title[:250], priority=urgency.priority,
        urgency_reasons=urgency.reasons, severity=alert.severity.value, fault_code=alert.probable_fault.code,
        fault_name=fault_en, confidence=alert.probable_fault.confidence, alternatives=alternatives,
        contributors=tuple(alert.contributors), time_to_failure_h=None if ttf is None else (ttf.p50, ttf.p10),
        sensor_issues=issues, parts=tuple(fault.parts), checks=tuple(fault.checks), record=record,
        customer=customer, customer_language=language, public_message=public, internal_note=internal,
        brief=brief, dashboard_url=dashboard, opened_at=promise_from, sla_deadline=deadline,
        contact_by=contact_by, event_at=event_at, note=alert.note, gateway=alert.agent.gateway, reference=ref,
        snoozed_until=until, snoozed_by=who,
    )
