"""Protocol-neutral request and answer values passed between the socket shell and the pure desks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["SimRequest", "SimResponse"]


@dataclass(frozen=True)
class SimRequest:
    """One HTTP request as the desks see it.

    Attributes:
        method: upper-case HTTP method.
        path: the path without query string.
        query: query parameters, each with all its values in order.
        headers: header names lower-cased.
        body: the raw body bytes (the webhook signature is computed over these).
    """

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def from_target(cls, method: str, target: str, headers: Mapping[str, str], body: bytes) -> SimRequest:
        """Build a request from the request line's target (``/path?query``)."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        return cls(method=method.upper(), path=parts.path, query=query,
                   headers={k.lower(): v for k, v in headers.items()}, body=body)

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class SimResponse:
    """One HTTP answer: status, extra headers and the body bytes; ``replayed`` marks an idempotent replay."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json; charset=utf-8"
    replayed: bool = False

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> SimResponse:
        """A JSON answer."""
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status=status, body=body, headers=tuple((headers or {}).items()))

    @classmethod
    def empty(cls, status: int, headers: Mapping[str, str] | None = None) -> SimResponse:
        """An answer without a body (204, or ServiceNow's ``X-no-response-body``)."""
        return cls(status=status, headers=tuple((headers or {}).items()))

    def with_headers(self, extra: Mapping[str, str]) -> SimResponse:
        """A copy with ``extra`` headers appended."""
        headers = self.headers + tuple(extra.items())
        return SimResponse(self.status, self.body, headers, self.content_type, self.replayed)

    def as_replay(self, extra: Mapping[str, str]) -> SimResponse:
        """A copy marked as an idempotent replay, with ``extra`` headers appended."""
        return SimResponse(self.status, self.body, self.headers + tuple(extra.items()), self.content_type, True)
