"""Ingest core: turn one inbound MQTT message into a validated object or a dead letter. Pure.

Nothing here raises on bad input: every message becomes exactly one :class:`Accepted`,
:class:`CommandReceived` or :class:`Rejected`, so a hostile or broken publisher can never stop the
agent, and every refusal carries a reason for the dead-letter topic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pdm_common.contracts import MAX_COMMAND_BYTES, Command, DeadLetter, Telemetry
from pdm_common.errors import ContractError
from pdm_common.topics import AssetChannel, Topics

__all__ = ["Accepted", "CommandReceived", "IngestCounters", "IngestResult", "Rejected", "ingest"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid telemetry sample."""

    telemetry: Telemetry


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A well-formed command for one asset; :class:`edge_agent.commands.CommandGate` decides whether
    it is applied (``topic`` and ``payload`` are kept for the dead letter of a refusal)."""

    site: str
    asset: str
    command: Command
    topic: str = ""
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused message and where its dead letter goes."""

    topic: str
    letter: DeadLetter


IngestResult = Accepted | CommandReceived | Rejected


@dataclass
class IngestCounters:
    """Running counts of what ingest saw; the metrics endpoint and the demo read them."""

    received: int = 0
    valid: int = 0
    commands: int = 0
    dead_lettered: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def count(self, result: IngestResult) -> None:
        """Account for one ingest outcome."""
        self.received += 1
        if isinstance(result, Accepted):
            self.valid += 1
        elif isinstance(result, CommandReceived):
            self.commands += 1
        else:
            self.dead_lettered += 1
            self.by_reason[result.letter.reason] += 1


def _reject(topics: Topics, topic: str, payload: bytes, now: datetime, err: ContractError) -> Rejected:
    letter = DeadLetter.build(reason=err.reason, detail=err.detail, topic=topic, payload=payload, received_at=now)
    return Rejected(topic=topics.deadletter_for(topic), letter=letter)


def ingest(topics: Topics, topic: str, payload: bytes, now: datetime) -> IngestResult:
    """Classify one message received on ``topic`` at ``now``.

    Telemetry and commands are validated against the wire contracts; anything else — an unknown
    topic shape, a name outside ``[A-Za-z0-9_-]{1,64}``, non-JSON, wrong types, NaN, an oversize
    payload — becomes a :class:`Rejected` with the reason.
    """
    try:
        parsed = topics.parse(topic)
        if parsed.channel is AssetChannel.TELEMETRY:
            return Accepted(Telemetry.from_wire(parsed.site, parsed.asset, payload))
        if parsed.channel is AssetChannel.CMD:
            cmd = Command.from_json(payload, max_bytes=MAX_COMMAND_BYTES)
            return CommandReceived(parsed.site, parsed.asset, cmd, topic, payload)
        raise ContractError("unexpected_channel", f"the agent does not consume {parsed.channel.value} messages")
    except ContractError as err:
        return _reject(topics, topic, payload, now, err)
