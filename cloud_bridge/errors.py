"""Exceptions of the cloud bridge, split into retryable and permanent.

    BridgeError
    ├── RegistryError               the asset registry or fault-action table is unreadable (permanent
    │                               for that file: the bridge keeps the last good copy)
    ├── DeliveryError               a desk did not accept a ticket operation
    │   ├── RetryableDeliveryError  5xx, 408, 429, timeouts, refused or dropped connections:
    │   │   │                       back off (honouring ``retry_after_s``) and try again
    │   │   └── DeskConfigError     misconfigured on our side (TLS certificate not trusted): reported
    │   │                           with the fix; events wait for it, they are not failed attempts
    │   └── PermanentDeliveryError  other 4xx, or a response we cannot understand: dead-letter it
    └── OutboxError                 the outbox database failed (retryable: the caller tries again)
        ├── OutboxFullError         the bound was reached and nothing could be dropped by policy
        └── OutboxDataError         the database refuses this data (permanent: the consumer dead-letters
                                    the event instead of waiting for a redelivery that fails the same way)

httpx, sqlite3 and psycopg exceptions are translated into these at the adapter boundary; nothing
above the adapters catches a third-party exception.
"""

from __future__ import annotations

from pdm_common.errors import Redeliver

__all__ = [
    "BridgeError",
    "DeliveryError",
    "DeskConfigError",
    "NotStoredError",
    "OutboxDataError",
    "OutboxError",
    "OutboxFullError",
    "PermanentDeliveryError",
    "RegistryError",
    "RetryableDeliveryError",
]


class BridgeError(Exception):
    """Root of the cloud bridge's exceptions."""


class RegistryError(BridgeError):
    """A registry or table file cannot be read or does not validate; the message names the entry."""


class DeliveryError(BridgeError):
    """A desk did not accept a ticket operation.

    Attributes:
        desk: the configured desk name.
        status: the HTTP status, or None when no response arrived.
        reason: a short, stable machine-readable code (``http_503``, ``timeout`` …) for logs and
            the dead-letter table.
    """

    def __init__(self, desk: str, reason: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(f"{desk}: {reason}: {detail}")
        self.desk = desk
        self.reason = reason
        self.detail = detail
        self.status = status


class RetryableDeliveryError(DeliveryError):
    """A transient failure; ``retry_after_s`` carries the server's ``Retry-After`` when it sent one."""

    def __init__(
        self, desk: str, reason: str, detail: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(desk, reason, detail, status=status)
        self.retry_after_s = retry_after_s


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (bad request, auth refused, unknown project): dead-letter with the reason."""


class DeskConfigError(RetryableDeliveryError):
    """A problem only the operator can fix (an untrusted TLS certificate): reported with the fix, retried
    slowly (``retry.config_error_open_s``) and never counted towards ``max_attempts``."""

    def __init__(self, desk: str, reason: str, detail: str, *, fix: str) -> None:
        super().__init__(desk, reason, detail)
        self.fix = fix


class OutboxError(BridgeError):
    """The outbox database failed; the operation may be retried."""


class NotStoredError(OutboxError, Redeliver):
    """An alert event could not be stored now; its MQTT message is left unacknowledged for redelivery."""


class OutboxFullError(OutboxError):
    """The outbox is at its bound and holds no ``updated`` event that policy allows dropping."""


class OutboxDataError(OutboxError):
    """The database refuses this event's data (a value out of its range, a constraint): retrying the
    same event cannot help, so it is dead-lettered with the reason and the message acknowledged."""
