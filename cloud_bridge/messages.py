"""Plain-language customer messages in English and Norwegian: what we noticed, what happens next, when.

Pure text composition. Day and month names are tabled here rather than taken from the process
locale, so the output does not depend on what the host has installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["MessageFacts", "customer_message", "format_when"]

Language = Literal["en", "no"]
MessageKind = Literal["open", "update", "reopen", "resolve"]

_DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "no": ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"),
}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "no": ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september", "oktober",
           "november", "desember"),
}


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the message talks about, already in the customer's language where it is text."""

    kind: MessageKind
    customer_name: str | None
    equipment: str
    fault_name: str
    sensor_fault: bool
    contact_by: datetime
    zone: ZoneInfo
    fails_within_h: float | None


def format_when(when: datetime, zone: ZoneInfo, language: Language) -> str:
    """``Friday 16 January at 14:00`` / ``fredag 16. januar kl. 14:00`` in the given zone.

    >>> from datetime import UTC
    >>> format_when(datetime(2026, 1, 16, 13, 0, tzinfo=UTC), ZoneInfo("Europe/Oslo"), "no")
    'fredag 16. januar kl. 14:00'
    """
    local = when.astimezone(zone)
    day = _DAYS[language][local.weekday()]
    month = _MONTHS[language][local.month - 1]
    if language == "no":
        return f"{day} {local.day}. {month} kl. {local:%H:%M}"
    return f"{day} {local.day} {month} at {local:%H:%M}"


def _english(f: MessageFacts) -> str:
    hello = f"Hello {f.customer_name}," if f.customer_name else "Hello,"
    when = format_when(f.contact_by, f.zone, "en")
    if f.kind == "resolve":
        return (f"{hello} the readings from your {f.equipment} are back to normal, so we have closed the case "
                "about it. You do not need to do anything. Thank you for your patience.")
    if f.kind == "reopen":
        noticed = (f"after the recent service visit, your {f.equipment} still shows signs of {f.fault_name}: "
                   "the repair did not hold, and we are sorry about that.")
    elif f.sensor_fault:
        noticed = (f"our monitoring noticed that one of the sensors in your {f.equipment} gives wrong readings. "
                   "The unit itself seems to work normally.")
    else:
        noticed = f"our monitoring noticed early signs of {f.fault_name} in your {f.equipment}."
        if f.fails_within_h is not None:
            noticed += f" Left alone, it could stop working within about {max(1.0, f.fails_within_h / 24):.0f} days."
    next_step = (f"A service technician will contact you by {when} to agree on a visit, and will bring the "
                 "parts that are most likely needed.")
    return f"{hello} {noticed} {next_step} You do not need to call us or do anything else."


def _norwegian(f: MessageFacts) -> str:
    hello = f"Hei {f.customer_name}," if f.customer_name else "Hei,"
    when = format_when(f.contact_by, f.zone, "no")
    if f.kind == "resolve":
        return (f"{hello} målingene fra {f.equipment} er tilbake til normalen, så vi har lukket saken. "
                "Du trenger ikke gjøre noe. Takk for tålmodigheten.")
    if f.kind == "reopen":
        noticed = (f"etter det siste servicebesøket viser {f.equipment} fortsatt tegn på {f.fault_name}: "
                   "reparasjonen holdt ikke, og det beklager vi.")
    elif f.sensor_fault:
        noticed = (f"overvåkingen vår har oppdaget at en av sensorene i {f.equipment} gir feil målinger. "
                   "Selve anlegget ser ut til å fungere normalt.")
    else:
        noticed = f"overvåkingen vår har oppdaget tidlige tegn på {f.fault_name} i {f.equipment}."
        if f.fails_within_h is not None:
            days = max(1.0, f.fails_within_h / 24)
            noticed += f" Uten tiltak kan det slutte å virke i løpet av omtrent {days:.0f} dager."
    next_step = (f"En servicetekniker kontakter deg innen {when} for å avtale et besøk, og tar med delene som "
                 "mest sannsynlig trengs.")
    return f"{hello} {noticed} {next_step} Du trenger ikke ringe oss eller gjøre noe annet."


def customer_message(facts: MessageFacts, language: Language) -> str:
    """The customer-facing message in ``language`` (``en`` or ``no``)."""
    return _norwegian(facts) if language == "no" else _english(facts)
