"""Credentials the simulated desks accept, and the pure checks of each scheme.

The defaults are documented in docs/desk-simulator.md; they are test fixtures, not secrets.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from pdm_common.signing import DEFAULT_TOLERANCE_S, SignatureError, sign, verify_fresh
from simulators.desk.exchange import SimRequest

__all__ = [
    "MAX_WEBHOOK_SKEW_S", "DeskCredentials", "basic_user", "bearer_token", "webhook_auth_error", "webhook_headers",
]

MAX_WEBHOOK_SKEW_S = DEFAULT_TOLERANCE_S
"""Refuse webhook timestamps further than five minutes from the clock (the Standard Webhooks recommendation)."""


@dataclass(frozen=True)
class DeskCredentials:
    """What each simulated desk accepts.

    Attributes:
        webhook_secret: the Standard Webhooks signing secret of ``webhook-signature``.
        pagerduty_webhook_secret: the signing secret of the simulator's outgoing PagerDuty v3 webhooks.
        pagerduty_routing_key: the one Events v2 integration key accepted (32 characters).
        zendesk_email: agent e-mail of Zendesk's API-token basic auth (``{email}/token:{token}``).
        zendesk_api_token: the API token of that basic auth.
        zendesk_bearer_token: the OAuth token accepted as ``Authorization: Bearer``.
        jira_email: Atlassian account e-mail of basic auth.
        jira_api_token: Atlassian API token of basic auth.
        servicenow_user: ServiceNow basic-auth user.
        servicenow_password: ServiceNow basic-auth password.
        servicenow_bearer_token: the OAuth token accepted as ``Authorization: Bearer``.
    """

    webhook_secret: str = "pdm-sim-webhook-secret"
    pagerduty_routing_key: str = "0123456789abcdef0123456789abcdef"
    pagerduty_webhook_secret: str = "pdm-sim-pagerduty-webhook-secret"
    zendesk_email: str = "bridge@example.com"
    zendesk_api_token: str = "zendesk-api-token"
    zendesk_bearer_token: str = "zendesk-oauth-token"
    jira_email: str = "bridge@example.com"
    jira_api_token: str = "jira-api-token"
    servicenow_user: str = "pdm.bridge"
    servicenow_password: str = "servicenow-password"
    servicenow_bearer_token: str = "servicenow-oauth-token"

    def __repr__(self) -> str:
        # Keep the secrets out of logs and tracebacks.
        return "DeskCredentials(<redacted>)"

    def zendesk_ok(self, request: SimRequest) -> bool:
        """True if the request carries the Zendesk API-token basic auth or the bearer token."""
        expected = (f"{self.zendesk_email}/token", self.zendesk_api_token)
        return _same(basic_user(request), expected) or _same_token(bearer_token(request), self.zendesk_bearer_token)

    def jira_ok(self, request: SimRequest) -> bool:
        """True if the request carries the Atlassian e-mail + API-token basic auth."""
        return _same(basic_user(request), (self.jira_email, self.jira_api_token))

    def servicenow_ok(self, request: SimRequest) -> bool:
        """True if the request carries the ServiceNow basic auth or the bearer token."""
        expected = (self.servicenow_user, self.servicenow_password)
        return _same(basic_user(request), expected) or _same_token(
            bearer_token(request), self.servicenow_bearer_token
        )


def _same(got: tuple[str, str] | None, expected: tuple[str, str]) -> bool:
    if got is None:
        return False
    # `&`, not `and`: compare both parts every time so timing does not reveal which one was wrong.
    return hmac.compare_digest(got[0], expected[0]) & hmac.compare_digest(got[1], expected[1])


def _same_token(got: str | None, expected: str) -> bool:
    return got is not None and hmac.compare_digest(got, expected)


def basic_user(request: SimRequest) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic`` header, or None."""
    value = request.header("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(request: SimRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    value = request.header("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers a sender puts on ``body``."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body)}


def webhook_auth_error(request: SimRequest, secret: str, now_epoch_s: float) -> str | None:
    """Why the request's Standard Webhooks signature is refused (missing, malformed, stale, mismatch), or None.

    The receiver's recipe (standardwebhooks.com; docs/bridge.md, "Webhook signing"): read ``webhook-id``,
    ``webhook-timestamp`` and ``webhook-signature``; refuse a timestamp more than
    :data:`MAX_WEBHOOK_SKEW_S` from the clock; verify the HMAC over ``{id}.{timestamp}.{raw body}``.
    Replays (an id already processed) are the caller's check, after this one passed.

    Args:
        request: the request with its raw body.
        secret: the shared signing secret.
        now_epoch_s: the simulator's clock, epoch seconds.
    """
    message_id = request.header("webhook-id")
    raw_ts = request.header("webhook-timestamp")
    signature = request.header("webhook-signature")
    if not message_id or raw_ts is None or signature is None:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        ts = int(raw_ts.strip())
    except ValueError:
        return "webhook-timestamp is not integer epoch seconds"
    try:
        verify_fresh(secret, message_id, ts, request.body, signature, now_s=now_epoch_s,
                     tolerance_s=MAX_WEBHOOK_SKEW_S)
    except SignatureError as exc:
        return f"webhook-signature refused: {exc.reason}: {exc.detail}"
    return None
