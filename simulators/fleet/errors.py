"""Exceptions of the fleet simulator.

FleetError
├── ScenarioError     a scenario file is missing, not TOML, or breaks the schema (permanent: fix the file)
└── PublishError      the MQTT broker refused or dropped the publisher (retryable: check the broker)
"""

from __future__ import annotations

__all__ = ["FleetError", "PublishError", "ScenarioError"]


class FleetError(Exception):
    """Root of the fleet simulator's exceptions."""


class ScenarioError(FleetError, ValueError):
    """A scenario is invalid; the message names the file and each offending field."""


class PublishError(FleetError, ConnectionError):
    """Publishing telemetry to the broker failed (connection refused, lost, or a publish timed out)."""
