"""Exceptions of the edge agent.

    EdgeAgentError
    ├── CheckpointError    a model checkpoint cannot be written (retryable: disk full, permissions)
    ├── CommandRefused     a command is not applied (unsigned, stale, unknown alert, snooze out of bounds)
    └── OutboxError        the durable outbox failed (retryable: locked/busy; permanent: corrupt file)

A checkpoint that cannot be *read* is not an error: :func:`edge_agent.checkpoint.load` logs it and
returns ``None`` so the assets re-warm instead of the agent crash-looping.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "CommandRefused", "EdgeAgentError", "OutboxError"]


class EdgeAgentError(Exception):
    """Root of the edge agent's exceptions."""


class CheckpointError(EdgeAgentError):
    """Writing a checkpoint failed; the previous checkpoint on disk is left intact."""


class CommandRefused(EdgeAgentError):
    """A command the agent will not apply; ``reason`` is its dead-letter reason (docs/contracts.md)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class OutboxError(EdgeAgentError):
    """The SQLite outbox could not be opened, written or read (the sqlite3 error is chained)."""
