"""What every desk adapter shares: one httpx client, error translation, the :class:`Delivery` input.

An adapter maps a desk-independent :class:`~cloud_bridge.ticket.Ticket` onto its desk's verbs and
returns the desk's reference for the ticket. It decides nothing about retries: it raises
:class:`RetryableDeliveryError` or :class:`PermanentDeliveryError` and the delivery loop acts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cloud_bridge.config import DeskSettings
from cloud_bridge.errors import PermanentDeliveryError, RetryableDeliveryError
from cloud_bridge.ticket import Ticket
from pdm_common import __version__
from pdm_common.backoff import parse_retry_after

__all__ = ["Delivery", "DeskAdapter"]

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""RFC 9110: 408 Request Timeout, 425 Too Early, 429 Too Many Requests and the transient 5xx."""

MAX_ERROR_TEXT = 300
"""Enough of a desk's error body to diagnose, short enough for logs and the dead-letter table."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ticket operation to perform.

    Attributes:
        ticket: what to send.
        ticket_ref: the desk's reference from an earlier delivery of this alert, if any.
        first_attempt: False on retries; adapters with a time-limited idempotency window look up
            the ticket before creating on a retry.
        plot: renders the PNG of the contributing sensors on demand (None when not wanted).
    """

    ticket: Ticket
    ticket_ref: str | None
    first_attempt: bool = True
    plot: Callable[[], bytes | None] | None = None


class DeskAdapter(ABC):
    """Base of the desk adapters: one pooled httpx client per desk, bounded timeouts."""

    accepts_attachments = False
    token_is_bearer = True
    """Send the token as ``Authorization: Bearer`` when no username is set (False where it is a body field)."""

    def __init__(self, name: str, settings: DeskSettings) -> None:
        self.name = name
        self.settings = settings
        headers = {"User-Agent": f"pdm-cloud-bridge/{__version__}", "Accept": "application/json"}
        token = settings.resolved_token()
        if self.token_is_bearer and settings.username is None and token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=settings.base_url,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            headers=headers,
            auth=self._auth(),
        )

    def _auth(self) -> httpx.Auth | None:
        """Basic auth (username + token) when a username is set."""
        token = self.settings.resolved_token()
        if self.settings.username is not None and token is not None:
            return httpx.BasicAuth(self.settings.username, token)
        return None

    @abstractmethod
    def deliver(self, delivery: Delivery) -> str | None:
        """Perform the ticket operation; return the desk's ticket reference.

        Raises:
            RetryableDeliveryError: try again later.
            PermanentDeliveryError: dead-letter the event.
        """

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and translate failures; returns only 2xx responses.

        Raises:
            RetryableDeliveryError: timeouts, transport errors, 408/425/429/5xx (with Retry-After).
            PermanentDeliveryError: any other non-2xx status.
        """
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableDeliveryError(self.name, "timeout", f"{method} {url}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RetryableDeliveryError(self.name, "transport", f"{method} {url}: {type(exc).__name__}") from None
        if response.is_success:
            return response
        detail = f"{method} {url}: {response.text[:MAX_ERROR_TEXT]}"
        if response.status_code in _RETRYABLE_STATUS:
            wait = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
            raise RetryableDeliveryError(self.name, f"http_{response.status_code}", detail,
                                         status=response.status_code, retry_after_s=wait)
        raise PermanentDeliveryError(self.name, f"http_{response.status_code}", detail, status=response.status_code)

    def json_of(self, response: httpx.Response) -> Any:
        """The response body as JSON.

        Raises:
            PermanentDeliveryError: the desk answered 2xx with something that is not JSON.
        """
        try:
            return response.json()
        except ValueError:
            raise PermanentDeliveryError(self.name, "bad_response", f"not JSON: {response.text[:100]!r}",
                                         status=response.status_code) from None
