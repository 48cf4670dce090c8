"""The pure ticket-mapping core: one :class:`AlertEvent` plus its registry record becomes a :class:`Ticket`.

No I/O and no clock: the caller passes ``now``. Desk adapters translate a Ticket into their own
fields and verbs; everything a technician or dispatcher reads is decided here, once, for all desks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cloud_bridge.fault_actions import FaultActions
from cloud_bridge.messages import Language, MessageFacts, MessageKind, customer_message
from cloud_bridge.registry import AssetRecord
from cloud_bridge.urgency import CalendarPolicy, Priority, assess
from pdm_common.contracts import AlertEvent, AlertStatus, Contributor, EventType, SensorStatus, format_ts

__all__ = ["MappingContext", "Ticket", "TicketAction", "action_for", "map_alert", "sla_deadline"]

_KIND_WORDS = {"heat_pump": {"en": "heat pump", "no": "varmepumpen"}, "pump": {"en": "pump", "no": "pumpen"}}
"""Norwegian takes the definite form ("i varmepumpen"), which reads naturally in every message."""


class TicketAction(StrEnum):
    """What the desk should do; each adapter maps these onto its own verbs."""

    OPEN = "open"
    UPDATE = "update"
    ACKNOWLEDGE = "acknowledge"
    REOPEN = "reopen"
    RESOLVE = "resolve"


def action_for(alert: AlertEvent) -> TicketAction:
    """The desk action an alert event calls for.

    ``updated`` with status ``reopened`` ("fix not confirmed") reopens; with ``snoozed`` or
    ``verifying`` someone has taken the alert in hand, which acknowledges the ticket.
    """
    if alert.event is EventType.OPENED:
        return TicketAction.OPEN
    if alert.event is EventType.RESOLVED:
        return TicketAction.RESOLVE
    if alert.status is AlertStatus.REOPENED:
        return TicketAction.REOPEN
    if alert.status in (AlertStatus.SNOOZED, AlertStatus.VERIFYING):
        return TicketAction.ACKNOWLEDGE
    return TicketAction.UPDATE


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Everything the mapping needs besides the alert: tables, calendar and promises."""

    fault_actions: FaultActions
    calendar: CalendarPolicy
    sla_hours: dict[str, float]
    dashboard_url: str
    default_language: Language = "en"


def sla_deadline(opened_at: datetime, priority: Priority, ctx: MappingContext, asset: AssetRecord | None) -> datetime:
    """When the promised response is due: the priority's hours, capped by the asset's contract SLA."""
    hours = ctx.sla_hours[priority.value]
    if asset is not None and asset.sla_hours is not None:
        hours = min(hours, asset.sla_hours)
    return opened_at + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A desk-independent ticket operation for one alert event."""

    dedup_key: str
    event_seq: int
    action: TicketAction
    site: str
    asset: str
    title: str
    summary: str
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
    customer_language: Language
    customer_message: str
    dashboard_url: str
    opened_at: datetime
    sla_deadline: datetime
    note: str | None
    gateway: str

    def description(self) -> str:
        """The ticket body in plain text (Markdown-friendly), for desks without structured fields."""
        lines = [self.summary, "", f"Priority {self.priority.value} ({self.priority.words}) because:"]
        lines += [f"- {r}" for r in self.urgency_reasons]
        lines += ["", f"Respond by: {format_ts(self.sla_deadline)}", "", "Diagnosis:"]
        lines.append(f"- probable fault: {self.fault_name} ({self.fault_code}), confidence {self.confidence:.0%}")
        lines += [f"- alternative: {code} ({conf:.0%})" for code, conf in self.alternatives]
        if self.time_to_failure_h is not None:
            p50, p10 = self.time_to_failure_h
            lines.append(f"- time to failure: about {p50:.0f} h (pessimistic {p10:.0f} h)")
        for c in self.contributors:
            expected = "n/a" if c.expected is None else f"{c.expected:g}"
            value = "n/a" if c.value is None else f"{c.value:g}"
            lines.append(f"- {c.metric}: {value} (expected {expected}, {c.deviation:+.1f} sigma)")
        lines += [f"- sensor {issue}" for issue in self.sensor_issues]
        lines += ["", "Bring:"] + [f"- {p}" for p in self.parts]
        lines += ["", "Check:"] + [f"- {c}" for c in self.checks]
        rec = self.record
        if rec is not None:
            lines += ["", "Customer:", f"- {rec.customer}", f"- {rec.address}",
                      f"- contact: {rec.contact.name} {rec.contact.phone or ''} {rec.contact.email or ''}".rstrip()]
            if rec.vulnerable_occupants:
                lines.append("- vulnerable occupants: " + ", ".join(rec.vulnerable_occupants))
            lines += ["", "Asset:", f"- {rec.model}, serial {rec.serial}, installed {rec.install_date.isoformat()}"]
            if rec.warranty_until is not None:
                lines.append(f"- warranty until {rec.warranty_until.isoformat()}")
            lines += [f"- {v.date.isoformat()}: {v.work}" for v in rec.service_history]
        else:
            lines += ["", "Customer: unknown: this asset is not in the asset registry."]
        lines += ["", f"Message to the customer ({self.customer_language}):", self.customer_message]
        lines += ["", f"Dashboard: {self.dashboard_url}", f"Alert: {self.dedup_key} (event {self.event_seq})"]
        if self.note:
            lines.insert(0, self.note)
            lines.insert(1, "")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """A structured, JSON-ready view (the generic webhook body)."""
        rec = self.record
        return {
            "dedup_key": self.dedup_key,
            "event_seq": self.event_seq,
            "action": self.action.value,
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
                "service_history": [{"date": v.date.isoformat(), "work": v.work} for v in rec.service_history],
            },
            "diagnosis": {
                "probable_fault": self.fault_code, "fault_name": self.fault_name, "confidence": self.confidence,
                "alternatives": [{"code": c, "confidence": p} for c, p in self.alternatives],
                "contributors": [c.model_dump() for c in self.contributors],
                "time_to_failure_h": None if self.time_to_failure_h is None else {
                    "p50": self.time_to_failure_h[0], "p10": self.time_to_failure_h[1]},
                "sensor_issues": list(self.sensor_issues),
            },
            "parts": list(self.parts),
            "checks": list(self.checks),
            "customer_message": self.customer_message,
            "links": {"dashboard": self.dashboard_url},
            "sla_deadline": format_ts(self.sla_deadline),
            "note": self.note,
        }


_MESSAGE_KIND: dict[TicketAction, MessageKind] = {
    TicketAction.OPEN: "open",
    TicketAction.UPDATE: "update",
    TicketAction.ACKNOWLEDGE: "update",
    TicketAction.REOPEN: "reopen",
    TicketAction.RESOLVE: "resolve",
}


def _note(alert: AlertEvent, action: TicketAction) -> str | None:
    if action is TicketAction.OPEN:
        return None
    words = {
        TicketAction.UPDATE: "Update",
        TicketAction.ACKNOWLEDGE: "In hand",
        TicketAction.REOPEN: "Reopened: fix not confirmed after service",
        TicketAction.RESOLVE: "Resolved: readings back to normal",
    }[action]
    status = f", status {alert.status.value}" if alert.status is not None else ""
    detail = f": {alert.note}" if alert.note else ""
    return f"{words} (event {alert.event_seq}{status}, severity {alert.severity.value}){detail}"


def map_alert(alert: AlertEvent, record: AssetRecord | None, *, now: datetime, ctx: MappingContext) -> Ticket:
    """Map an alert event and its asset's registry record onto a desk-independent ticket.

    Args:
        alert: the validated alert event.
        record: the asset's registry record, or None when the registry does not know the asset.
        now: the current instant; decides "weekend ahead" and friends.
        ctx: fault table, calendar, SLA hours and link template.

    Returns:
        The ticket operation, with title, priority and reasons, diagnosis, parts and checks, and the
        customer message in the customer's language.
    """
    action = action_for(alert)
    urgency = assess(alert, record, now=now, calendar=ctx.calendar)
    language: Language = (record.language if record and record.language else None) or ctx.default_language
    fault = ctx.fault_actions.for_code(alert.probable_fault.code)
    fault_en = fault.name_in("en")
    kind_words = _KIND_WORDS[alert.kind]
    equipment_en = f"{record.model} {kind_words['en']}" if record else kind_words["en"]
    # The promise runs from detection; a reopen ("fix not confirmed") starts a new one.
    promise_from = (alert.emitted_at or alert.last_seen) if action is TicketAction.REOPEN else alert.first_seen
    deadline = sla_deadline(promise_from, urgency.priority, ctx, record)
    ttf = alert.time_to_failure_h
    facts = MessageFacts(
        kind=_MESSAGE_KIND[action],
        customer_name=record.contact.name if record else None,
        equipment=equipment_en if language == "en" else kind_words[language],
        fault_name=fault.name_in(language),
        sensor_fault=alert.is_sensor_fault,
        contact_by=deadline,
        zone=ctx.calendar.zone,
        fails_within_h=None if ttf is None or alert.is_sensor_fault else ttf.p50,
    )
    where = record.address if record else alert.site
    title = f"{alert.asset} ({equipment_en}, {where}): {fault_en}: {urgency.priority.words} ({urgency.priority.value})"
    if action is TicketAction.RESOLVE:
        title = f"Resolved: {title}"
    summary = (f"Probable {fault_en} on {equipment_en} {alert.asset} at site {alert.site} "
               f"({alert.probable_fault.confidence:.0%} confidence, severity {alert.severity.value}).")
    issues = tuple(f"{h.metric}: {h.status.value}" for h in alert.sensor_health if h.status is not SensorStatus.OK)
    return Ticket(
        dedup_key=alert.alert_id,
        event_seq=alert.event_seq,
        action=action,
        site=alert.site,
        asset=alert.asset,
        title=title[:250],
        summary=summary,
        priority=urgency.priority,
        urgency_reasons=urgency.reasons,
        severity=alert.severity.value,
        fault_code=alert.probable_fault.code,
        fault_name=fault_en,
        confidence=alert.probable_fault.confidence,
        alternatives=tuple((a.code, a.confidence) for a in alert.probable_fault.alternatives),
        contributors=tuple(alert.contributors),
        time_to_failure_h=None if ttf is None else (ttf.p50, ttf.p10),
        sensor_issues=issues,
        parts=tuple(fault.parts),
        checks=tuple(fault.checks),
        record=record,
        customer_language=language,
        customer_message=customer_message(facts, language),
        dashboard_url=ctx.dashboard_url.format(site=alert.site, asset=alert.asset),
        opened_at=promise_from,
        sla_deadline=deadline,
        note=_note(alert, action),
        gateway=alert.agent.gateway,
    )
