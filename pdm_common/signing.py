"""Message signing per the Standard Webhooks scheme, for webhooks and for MQTT payloads. Pure.

Standard Webhooks (standardwebhooks.com, spec ``spec/standard-webhooks.md``): the signed content is
``{msg_id}.{timestamp}.{body}`` with ``timestamp`` in whole seconds since the epoch; the signature is
HMAC-SHA256 of it, written ``v1,<base64>``; several signatures may be sent space-separated (key
rotation). Receivers refuse a timestamp outside a tolerance (five minutes in the spec) and an id
they have already seen.

HTTP carries the three values in the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
headers. MQTT 3.1.1 has no headers (the embedded broker speaks only 3.1.1), so MQTT payloads carry
them in an ``auth`` object inside the JSON (:class:`pdm_common.contracts.Auth`), and the body that is
signed is the payload's canonical JSON *without* ``auth`` (:func:`canonical_json`): sorted keys, no
spaces, UTF-8. Python's ``json`` round-trips floats exactly (shortest repr), so signer and verifier
build the same bytes from the same values.

Secrets are ``whsec_`` followed by base64 of the key bytes (as the spec's libraries write them); a
secret without that prefix is used as raw UTF-8 bytes, so an operator can also paste a passphrase.

>>> key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
>>> sig = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
>>> sig
'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
>>> verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', sig)
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import OrderedDict
from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_VERSION",
    "ReplayGuard",
    "SignatureError",
    "canonical_json",
    "decode_secret",
    "sign",
    "verify",
    "verify_fresh",
]

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
"""Five minutes either way: the Standard Webhooks spec's recommended timestamp tolerance."""
_MAX_SIGNATURES = 8
"""A header with more candidate signatures than any key rotation needs is refused, not tried."""


class SignatureError(ValueError):
    """A signed message failed verification; ``reason`` is a stable code for logs and metrics.

    Reasons: ``missing`` (no signature), ``malformed`` (not ``v1,<base64>``), ``mismatch`` (no
    signature matches the key), ``stale`` (timestamp outside the tolerance), ``replayed`` (id seen),
    ``unknown_key`` (no key configured under the payload's ``key_id``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret, or of a plain passphrase.

    Raises:
        ValueError: a ``whsec_`` secret whose rest is not base64, or an empty secret.
    """
    if not secret:
        raise ValueError("signing secret is empty")
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("signing secret starts with whsec_ but the rest is not base64") from None
    return secret.encode()


def canonical_json(obj: Any) -> bytes:
    """The bytes a signature covers for a JSON payload: sorted keys, no spaces, UTF-8.

    >>> canonical_json({"b": 1.5, "a": [True, None, "ø"]})
    b'{"a":[true,null,"\\xc3\\xb8"],"b":1.5}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message: ``v1,<base64 HMAC-SHA256>``."""
    return f"{SIGNATURE_VERSION}," + base64.b64encode(_digest(decode_secret(secret), msg_id, timestamp, body)).decode()


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, signatures: str) -> bool:
    """True when one of the space-separated ``signatures`` is this message's under ``secret``.

    Raises:
        SignatureError: ``missing`` or ``malformed`` signatures (a mismatch returns False).
    """
    parts = signatures.split()
    if not parts:
        raise SignatureError("missing", "no signature")
    if len(parts) > _MAX_SIGNATURES:
        raise SignatureError("malformed", f"{len(parts)} signatures, at most {_MAX_SIGNATURES}")
    expected = _digest(decode_secret(secret), msg_id, timestamp, body)
    seen_v1 = False
    for part in parts:
        version, _, value = part.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # the spec lets receivers skip versions they do not know
        seen_v1 = True
        try:
            candidate = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise SignatureError("malformed", "signature is not base64") from None
        if hmac.compare_digest(candidate, expected):
            return True
    if not seen_v1:
        raise SignatureError("malformed", f"no {SIGNATURE_VERSION} signature")
    return False


def verify_fresh(
    secret: str | list[str],
    msg_id: str,
    timestamp: int,
    body: bytes,
    signatures: str,
    *,
    now_s: float,
    tolerance_s: float | None = DEFAULT_TOLERANCE_S,
    replay: ReplayGuard | None = None,
) -> None:
    """Verify a message fully: signature under any of ``secret`` (rotation), freshness, replay.

    Args:
        secret: the key, or several during a rotation.
        now_s: the receiver's clock, seconds since the epoch (passed in: this module reads no clock).
        tolerance_s: largest accepted ``|now - timestamp|``; None skips the check (for messages that
            may legitimately wait in an outbox for days, whose order is kept by a sequence number).
        replay: ids already accepted; the id is recorded only when everything else passed.

    Raises:
        SignatureError: ``missing``, ``malformed``, ``mismatch``, ``stale`` or ``replayed``.
    """
    if tolerance_s is not None and abs(now_s - timestamp) > tolerance_s:
        raise SignatureError("stale", f"timestamp {timestamp} is {now_s - timestamp:+.0f} s from now")
    keys = [secret] if isinstance(secret, str) else secret
    if not any(verify(k, msg_id, timestamp, body, signatures) for k in keys):
        raise SignatureError("mismatch", "no signature matches the configured key")
    if replay is not None and not replay.accept(msg_id, now_s):
        raise SignatureError("replayed", f"message id {msg_id!r} was already accepted")


class ReplayGuard:
    """Ids accepted within the tolerance window; refuses one seen again. Bounded and pure.

    An id older than ``window_s`` is forgotten: by then its timestamp is stale and the freshness
    check refuses it anyway. ``max_ids`` bounds memory under a flood; when full, the oldest ids go
    first, which can only shorten the window for the oldest messages, never accept a forged one.

    >>> g = ReplayGuard(window_s=300, max_ids=2)
    >>> g.accept("a", 0.0), g.accept("a", 1.0), g.accept("b", 2.0)
    (True, False, True)
    """

    def __init__(self, *, window_s: float = 2 * DEFAULT_TOLERANCE_S, max_ids: int = 100_000) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def accept(self, msg_id: str, now_s: float) -> bool:
        """Record ``msg_id`` and return True, or return False if it was seen within the window."""
        while self._seen:
            oldest_id, at = next(iter(self._seen.items()))
            if now_s - at <= self.window_s and len(self._seen) < self.max_ids:
                break
            del self._seen[oldest_id]
        if msg_id in self._seen:
            return False
        self._seen[msg_id] = now_s
        return True

    def __len__(self) -> int:
        return len(self._seen)
