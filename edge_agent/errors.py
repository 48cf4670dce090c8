"""Exceptions of the edge agent.

    EdgeAgentError
    ├── CheckpointError    the checkpoint store cannot be opened or written (disk full, permissions, a
    │                      file where its directory should be); the agent runs on and retries
    └── CommandRefused     a command is not applied (unsigned, stale, unknown alert, snooze out of bounds)

The outbox raises nothing for disk problems: it keeps events in memory and reports them through
``Outbox.health`` (edge_agent/outbox.py).

An asset checkpoint that cannot be *read* is not an error either: that asset re-warms
(:class:`edge_agent.checkpoint.CheckpointRefused`, logged), the agent starts.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "CommandRefused", "EdgeAgentError"]


class EdgeAgentError(Exception):
    """Root of the edge agent's exceptions."""


class CheckpointError(EdgeAgentError):
    """The checkpoint store cannot be opened or written; what is on disk is left intact."""


class CommandRefused(EdgeAgentError):
    """A command the agent will not apply; ``reason`` is its dead-letter reason (docs/contracts.md)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

