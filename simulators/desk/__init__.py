"""Service-desk simulator: the generic signed webhook, PagerDuty Events v2, Zendesk, Jira Service Management
and ServiceNow on one real HTTP server, with injectable latency, 429, 5xx, timeouts and dropped connections.

Contract and defaults: docs/desk-simulator.md.
"""

from simulators.desk.auth import DeskCredentials, webhook_headers
from simulators.desk.errors import DeskSimError, FaultConfigError, RequestRefusedError
from simulators.desk.faults import FaultConfig, Outcome, OutcomeKind
from simulators.desk.server import DeskSimulator
from simulators.desk.store import Desk, Op

__all__ = [
    "Desk",
    "DeskCredentials",
    "DeskSimError",
    "DeskSimulator",
    "FaultConfig",
    "FaultConfigError",
    "Op",
    "Outcome",
    "OutcomeKind",
    "RequestRefusedError",
    "webhook_headers",
]
