"""What every desk adapter shares: one httpx client, error translation, the :class:`Delivery` input.

An adapter maps a desk-independent :class:`~cloud_bridge.ticket.Ticket` onto its desk's verbs and
returns the desk's reference for the ticket. It decides nothing about retries: it raises
:class:`RetryableDeliveryError` (:class:`DeskConfigError` for an untrusted TLS certificate) or
:class:`PermanentDeliveryError` and the delivery loop acts.

The protocol (one contract suite runs over every adapter, ``tests/bridge/test_desks.py``):

* :meth:`DeskAdapter.deliver` — perform one event's ticket operation, idempotently: when
  :attr:`Delivery.maybe_landed` is true, every step first looks on the desk for the ticket or the
  note it is about to create (each note carries the event's marker) and skips what already landed;
* :meth:`DeskAdapter.post_note` — an internal note on an existing ticket (the SLA warning), with the
  same look-before-write rule;
* :meth:`DeskAdapter.poll_changes` — what people changed in the desk since a cursor (two-way sync;
  desks that push instead, like PagerDuty's webhooks, return nothing here);
* :meth:`DeskAdapter.probe` — an authenticated read-only call saying what it found (``doctor``).
"""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cloud_bridge.config import DeskSettings
from cloud_bridge.errors import DeskConfigError, PermanentDeliveryError, RetryableDeliveryError
from cloud_bridge.ticket import Ticket
from pdm_common import __version__
from pdm_common.backoff import parse_retry_after
from pdm_common.errors import ConfigError

__all__ = ["ChangeKind", "Delivery", "DeskAdapter", "DeskChange", "PollResult"]

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
        maybe_landed: an earlier attempt at this same event may have reached the desk (it was leased
            before: a retry, or a replica that crashed mid-delivery); look before creating anything.
        started_at: when the first attempt at this event started (epoch s): bounds how long an
            eventually consistent search may still miss what that attempt created.
        now: the current time (epoch s).
        plot: renders the PNG of the contributing sensors on demand (None when not wanted).
        record_ref: remembers the desk's reference as soon as a create succeeded, so a failure in a
            later step of the same delivery never needs to find the ticket again.
        desk_resolved: two-way sync saw a person resolve the ticket in the desk.
        create_sent_at: when an earlier attempt at this event sent a create whose answer never came (epoch
            s): only then can an eventually consistent search miss a ticket that exists.
        mark_create_sent: call just before sending a create (durably noted for the next attempt).
        serviced_at: when the alert's service visit (``verifying`` event) was delivered (epoch s).
    """

    ticket: Ticket
    ticket_ref: str | None
    maybe_landed: bool = False
    started_at: float = 0.0
    now: float = 0.0
    plot: Callable[[], bytes | None] | None = None
    record_ref: Callable[[str], None] = lambda _ref: None
    desk_resolved: bool = False
    serviced_at: float | None = None
    create_sent_at: float | None = None
    mark_create_sent: Callable[[], None] = lambda: None


class ChangeKind:
    """What a person did to a ticket in the desk (values of :attr:`DeskChange.kind`)."""

    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REASSIGNED = "reassigned"
    COMMENTED = "commented"


@dataclass(frozen=True, slots=True)
class DeskChange:
    """One change a person made to a ticket, found by polling or pushed by a webhook.

    Attributes:
        ticket_ref: the desk's reference of the ticket (as stored by the bridge).
        kind: a :class:`ChangeKind` value.
        actor: who did it, in the desk's own id space (``agent-4711``, an accountId, a user name).
        change_id: stable id of the change (dedups repeated polls and re-sent webhooks).
        status: the ticket's status after the change, in the desk's words.
        assignee: the ticket's assignee after the change.
        text: a comment's text (the bridge looks for commands in it).
    """

    ticket_ref: str
    kind: str
    actor: str
    change_id: str
    status: str | None = None
    assignee: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    """Changes since the cursor and where the next poll starts."""

    changes: list[DeskChange] = field(default_factory=list)
    cursor: str | None = None


def _tls_verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_context(settings: DeskSettings) -> ssl.SSLContext | bool:
    if settings.ca_file is None:
        return True  # httpx's default: verify against certifi's trust store
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"desks: ca_file {settings.ca_file}: {exc}. Fix: point ca_file at a readable PEM "
                          "bundle holding the CA that signed the desk's certificate") from None


class DeskAdapter(ABC):
    """Base of the desk adapters: one pooled httpx client per desk, bounded timeouts, TLS always verified."""

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
            verify=_tls_context(settings),
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

    @abstractmethod
    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """Add an internal note to the alert's ticket (unless ``maybe_landed`` and ``marker`` is already there).

        Raises:
            RetryableDeliveryError: try again later.
            PermanentDeliveryError: the desk refuses it.
        """

    def poll_changes(self, cursor: str | None, *, now: float) -> PollResult:
        """Changes people made since ``cursor`` (None: start from ``now``); push-only desks return none.

        Raises:
            RetryableDeliveryError: try again at the next poll.
            PermanentDeliveryError: the desk refuses the query (credentials, rights).
        """
        return PollResult([], cursor)

    @abstractmethod
    def probe(self) -> str:
        """An authenticated read-only call; what it found, for ``cloud-bridge doctor``.

        Raises:
            RetryableDeliveryError: the desk did not answer (or, as DeskConfigError, TLS is not trusted).
            PermanentDeliveryError: the desk refused the credentials or the configured ids.
        """

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and translate failures; returns only 2xx responses.

        Raises:
            DeskConfigError: the desk's TLS certificate failed verification (a configuration problem).
            RetryableDeliveryError: timeouts, transport errors, 408/425/429/5xx (with Retry-After).
            PermanentDeliveryError: any other non-2xx status.
        """
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableDeliveryError(self.name, "timeout", f"{method} {url}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            tls = _tls_verify_failure(exc)
            if tls is not None:
                raise DeskConfigError(
                    self.name, "tls_verify_failed", f"{method} {url}: {tls.verify_message}",
                    fix=f"the certificate of {self.settings.base_url} is not trusted ({tls.verify_message}): renew "
                    f"it on the desk, or set [desks.{self.name}] ca_file to the CA bundle that signed it") from None
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
