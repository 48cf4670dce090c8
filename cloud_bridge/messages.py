"""Plain-language customer messages in English and Norwegian: what we noticed, what happens next, when.

Pure text composition. What goes in is only what the customer may read: a first name or full name,
the kind of equipment, the fault in words, the pessimistic time to failure and the promised contact
time. Phone numbers, addresses, occupants, checklists and internal notes never reach this module, so
they cannot leak into customer-facing text. Day and month names are tabled here rather than taken
from the process locale, so the output does not depend on what the host has installed.

Each kind of event has its own message (CUSTOMER.md: people remember the peak and the end):
``open`` (what we noticed, who calls and by when), ``reopen`` (the repair did not hold: an apology and
the new promise), ``fixed`` (the fix is confirmed by the readings), ``recovered`` (the readings returned
to normal by themselves) and ``reset`` (the monitoring was re-learned after a change on site).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["Language", "MessageFacts", "MessageKind", "customer_message", "format_when"]

Language = Literal["en", "no"]
MessageKind = Literal["open", "reopen", "fixed", "recovered", "reset"]

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
    """What the message talks about, already in the customer's language where it is text.

    Attributes:
        kind: which message.
        customer_name: how to greet (None: a neutral greeting).
        equipment: the equipment in the customer's language (``your NordAir heat pump`` is built from it).
        fault_name: the probable fault in the customer's language.
        sensor_fault: the alert is about a sensor, not the machine.
        contact_by: when a technician will have contacted the customer (None for closing messages).
        zone: the customer's time zone.
        fails_within_h: the pessimistic (p10) time to failure, when known and meaningful.
        reference: the case reference printed at the end (lets a retry find the message again).
        unclassified: no known fault explains the readings: the message says the unit does not run as
            it normally does and that the cause is not known yet, instead of naming a fault.
    """

    kind: MessageKind
    customer_name: str | None
    equipment: str
    fault_name: str
    sensor_fault: bool
    contact_by: datetime | None
    zone: ZoneInfo
    fails_within_h: float | None
    reference: str
    unclassified: bool = False


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


def _within(hours: float, language: Language) -> str:
    """A pessimistic horizon in words: hours below two days, else whole days (never rounded up to comfort)."""
    if hours < 48:
        n = max(1, int(hours))
        return (f"{n} timer" if n != 1 else "én time") if language == "no" else (f"{n} hours" if n != 1 else "an hour")
    days = int(hours // 24)
    return f"{days} dager" if language == "no" else f"{days} days"


def _english(f: MessageFacts) -> str:
    hello = f"Hello {f.customer_name}," if f.customer_name else "Hello,"
    ref = f"(Case reference {f.reference}.)"
    if f.kind == "fixed":
        return (f"{hello} the repair of your {f.equipment} is confirmed: its readings have stayed normal since the "
                f"service visit, so we have closed the case. Thank you for your patience. {ref}")
    if f.kind == "recovered":
        return (f"{hello} the unusual readings from your {f.equipment} have returned to normal by themselves and "
                "have stayed normal, so no visit is needed now and we have closed the case. We keep monitoring it "
                f"and will contact you if it happens again. {ref}")
    if f.kind == "reset":
        return (f"{hello} after the recent change to your {f.equipment}, our monitoring has re-learned what normal "
                f"looks like for it, and we have closed the case about the earlier readings. {ref}")
    if f.kind == "reopen":
        symptom = "does not run as it normally does" if f.unclassified else f"shows signs of {f.fault_name}"
        noticed = (f"we are sorry: after the recent service visit, your {f.equipment} still {symptom}, so the "
                   "repair did not hold.")
    elif f.unclassified:
        noticed = (f"our monitoring noticed that your {f.equipment} does not run as it normally does. The readings "
                   "do not show the cause yet; the technician will find it on site.")
    elif f.sensor_fault:
        noticed = (f"our monitoring noticed that one of the sensors in your {f.equipment} gives wrong readings. "
                   "The unit itself seems to work normally.")
    else:
        noticed = f"our monitoring noticed early signs of {f.fault_name} in your {f.equipment}."
        if f.fails_within_h is not None:
            noticed += f" If nothing is done, it could stop working within {_within(f.fails_within_h, 'en')}."
    when = format_when(f.contact_by, f.zone, "en") if f.contact_by else "soon"
    next_step = (f"A service technician will contact you by {when} to agree on a visit, and will bring the parts "
                 "that are most likely needed.")
    return f"{hello} {noticed} {next_step} You do not need to call us or do anything else. {ref}"


def _norwegian(f: MessageFacts) -> str:
    hello = f"Hei {f.customer_name}," if f.customer_name else "Hei,"
    ref = f"(Saksnummer {f.reference}.)"
    if f.kind == "fixed":
        return (f"{hello} reparasjonen av {f.equipment} er bekreftet: målingene har vært normale siden "
                f"servicebesøket, så vi har lukket saken. Takk for tålmodigheten. {ref}")
    if f.kind == "recovered":
        return (f"{hello} de uvanlige målingene fra {f.equipment} har gått tilbake til normalen av seg selv og holdt "
                "seg der, så det trengs ikke noe besøk nå, og vi har lukket saken. Vi følger med videre og tar "
                f"kontakt hvis det skjer igjen. {ref}")
    if f.kind == "reset":
        return (f"{hello} etter den siste endringen på {f.equipment} har overvåkingen vår lært på nytt hva som er "
                f"normalt for anlegget, og vi har lukket saken om de tidligere målingene. {ref}")
    if f.kind == "reopen":
        symptom = (f"går {f.equipment} fortsatt ikke som normalt" if f.unclassified
                   else f"viser {f.equipment} fortsatt tegn på {f.fault_name}")
        noticed = f"vi beklager: etter det siste servicebesøket {symptom}, så reparasjonen holdt ikke."
    elif f.unclassified:
        noticed = (f"overvåkingen vår har oppdaget at {f.equipment} ikke går som normalt. Målingene viser ikke "
                   "årsaken ennå; teknikeren finner den på stedet.")
    elif f.sensor_fault:
        noticed = (f"overvåkingen vår har oppdaget at en av sensorene i {f.equipment} gir feil målinger. "
                   "Selve anlegget ser ut til å fungere normalt.")
    else:
        noticed = f"overvåkingen vår har oppdaget tidlige tegn på {f.fault_name} i {f.equipment}."
        if f.fails_within_h is not None:
            noticed += f" Uten tiltak kan det slutte å virke i løpet av {_within(f.fails_within_h, 'no')}."
    when = format_when(f.contact_by, f.zone, "no") if f.contact_by else "snart"
    next_step = (f"En servicetekniker kontakter deg innen {when} for å avtale et besøk, og tar med delene som "
                 "mest sannsynlig trengs.")
    return f"{hello} {noticed} {next_step} Du trenger ikke ringe oss eller gjøre noe annet. {ref}"


def customer_message(facts: MessageFacts, language: Language) -> str:
    """The customer-facing message in ``language`` (``en`` or ``no``)."""
    return _norwegian(facts) if language == "no" else _english(facts)
