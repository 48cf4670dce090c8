"""A real sd_notify socket for tests: a unix datagram socket that records what a service sends."""

from __future__ import annotations

import socket
from pathlib import Path

RECV_TIMEOUT_S = 10.0
"""Upper bound for one datagram to arrive; generous for a loaded 2-core CI machine."""


class NotifySocket:
    """Binds ``path`` and reads sd_notify datagrams the way systemd does (one message per datagram)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(RECV_TIMEOUT_S)

    def receive(self, timeout_s: float = RECV_TIMEOUT_S) -> str | None:
        """The next datagram, or None when none came within ``timeout_s``."""
        self._sock.settimeout(timeout_s)
        try:
            return self._sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, predicate_text: str, limit: int = 200) -> list[str]:
        """Read datagrams until one contains ``predicate_text``; return everything read up to it."""
        seen: list[str] = []
        for _ in range(limit):
            msg = self.receive()
            if msg is None:
                raise AssertionError(f"no datagram containing {predicate_text!r}; got {seen}")
            seen.append(msg)
            if predicate_text in msg:
                return seen
        raise AssertionError(f"{predicate_text!r} not among {limit} datagrams: {seen[-5:]}")

    def drain(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out: list[str] = []
        while (msg := self.receive(0.01)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        """Close and unlink the socket."""
        self._sock.close()
        self.path.unlink(missing_ok=True)
