"""Exceptions of the edge agent.

    EdgeAgentError
    ├── CheckpointError    the checkpoint store cannot be opened or written (disk full, permissions, a
    │                      file where its directory should be); the agent runs on and retries
    └── OutboxError        reserved: the outbox reports disk problems through ``Outbox.health`` and
                           keeps events in memory instead of raising

An asset checkpoint that cannot be *read* is not an error either: that asset re-warms
(:class:`edge_agent.checkpoint.CheckpointRefused`, logged), the agent starts.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "EdgeAgentError", "OutboxError"]


class EdgeAgentError(Exception):
    """Root of the edge agent's exceptions."""


class CheckpointError(EdgeAgentError):
    """Writing a checkpoint failed; the previous checkpoint on disk is left intact."""


class OutboxError(EdgeAgentError):
    """The SQLite outbox could not be opened, written or read (the sqlite3 error is chained)."""
