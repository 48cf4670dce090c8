"""The socket shell: a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive) around :class:`DeskApp`.

No decisions here: read the request (bounded), ask the app for a :class:`Plan`, wait, then answer or
drop the connection. Why the stdlib server: no extra dependency, real sockets (so clients see real
keep-alive, disconnects and read timeouts), and enough throughput for the bridge benchmark
(docs/desk-simulator.md, "Measured").
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx

from pdm_common.logs import get_logger
from simulators.desk.app import DeskApp, Plan
from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.faults import FaultConfig, Outcome
from simulators.desk.store import Desk

__all__ = ["MAX_BODY_BYTES", "MAX_CONNECTIONS", "DeskSimulator"]

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A ticket with a PNG plot is well under 1 MiB; 4 MiB leaves room and bounds memory per request."""

MAX_CONNECTIONS = 256
"""Concurrent connections (one thread each); the bridge uses a pool of a few dozen at most."""

IDLE_TIMEOUT_S = 30.0
"""A keep-alive connection idle this long is closed, so abandoned clients do not pin threads."""

MAX_DRAIN_BYTES = 16 * 1024 * 1024
"""An over-large body is read and dropped up to this much, so the 413 reaches the client (lingering close)."""

MAX_CHUNK_LINE_BYTES = 1024
"""A chunk-size line is a hex number plus optional extensions; longer is malformed (RFC 9112 §7.1)."""

MAX_TRAILER_LINES = 64
"""Trailer fields after the last chunk that are read and ignored before the request is refused as malformed."""

SHUTDOWN_POLL_S = 0.05
"""How often serve_forever checks for shutdown: bounds how long stop() waits."""

_log = get_logger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: DeskApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.refused_connections = 0
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._connections_lock:
            if len(self._connections) >= MAX_CONNECTIONS:
                self.refused_connections += 1
                _log.warning("desk_sim.connection_refused", active=len(self._connections), limit=MAX_CONNECTIONS,
                             refused_total=self.refused_connections)
                return False
            self._connections.add(request)
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log an unexpected handler failure as one structured event instead of the stdlib's stderr traceback."""
        _log.warning("desk_sim.handler_failed", client=str(client_address), exc_info=True)

    def forget(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on a keep-alive read so its thread ends with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by the peer


def _too_large(limit: int) -> SimResponse:
    return SimResponse.json(413, {"error": "payload_too_large", "detail": f"body over {limit} bytes"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pdm-desk-sim"
    timeout = IDLE_TIMEOUT_S
    # Headers and body are separate writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per answer.
    disable_nagle_algorithm = True
    server: _Server

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.forget(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib access log; ``/_sim/requests`` records every request."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked), bounded by ``max_body_bytes``.

        Raises:
            RequestRefusedError: 400 for a malformed length or chunk, 413 for a body over the bound.
        """
        limit = self.server.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length", "0").strip()
        if not raw.isdigit():
            raise RequestRefusedError(SimResponse.json(400, {"error": "bad_content_length", "detail": raw}))
        length = int(raw)
        if length > limit:
            self._discard(length)
            raise RequestRefusedError(_too_large(limit))
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE_BYTES + 1)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0 or len(line) > MAX_CHUNK_LINE_BYTES:
                raise RequestRefusedError(SimResponse.json(400, {"error": "bad_chunk", "detail": repr(line[:40])}))
            if size == 0:
                break
            total += size
            if total > MAX_DRAIN_BYTES:
                raise RequestRefusedError(_too_large(limit))
            chunk = self.rfile.read(size)
            if total <= limit:
                parts.append(chunk)  # beyond the limit, keep reading (and dropping) so the 413 is not reset away
            self.rfile.readline(MAX_CHUNK_LINE_BYTES)  # the CRLF closing the chunk
        for _ in range(MAX_TRAILER_LINES):
            if self.rfile.readline(MAX_CHUNK_LINE_BYTES) in (b"\r\n", b"\n", b""):
                break
        if total > limit:
            raise RequestRefusedError(_too_large(limit))
        return b"".join(parts)

    def _discard(self, length: int) -> None:
        """Read and drop an over-large body (bounded) so closing the socket does not reset the 413 away."""
        remaining = min(length, MAX_DRAIN_BYTES)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 64 * 1024))
                if not chunk:
                    return
                remaining -= len(chunk)
        except OSError:
            return  # the client went away; nothing left to protect

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except RequestRefusedError as refused:
            self.close_connection = True
            plan = Plan(refused.response)
            path = self.path
        else:
            request = SimRequest.from_target(self.command, self.path, dict(self.headers.items()), body)
            plan = self.server.app.dispatch(request, datetime.now(UTC))
            path = request.path
            if request.path.startswith("/_sim/"):
                deliver_outgoing(self.server.app)
        if plan.delay_s > 0 and self.server.stopping.wait(plan.delay_s):
            self.close_connection = True
            return
        try:
            if plan.response is None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._write(plan.response)
        except OSError as exc:
            # Expected after a simulated timeout: the client gave up before the held answer was written.
            self.close_connection = True
            _log.info("desk_sim.client_gone", path=path, error=type(exc).__name__)

    def _write(self, response: SimResponse) -> None:
        self.send_response(response.status)
        if response.status != 204:
            if response.body:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)


OUTGOING_TIMEOUT_S = 5.0
"""Bound on one outgoing webhook (PagerDuty v3) to its subscriber."""


def deliver_outgoing(app: DeskApp) -> list[int | None]:
    """POST the desks' queued outgoing webhooks; the status of each (None when unreachable)."""
    statuses: list[int | None] = []
    for url, body, headers in app.outgoing.take():
        try:
            statuses.append(httpx.post(url, content=body, headers=headers, timeout=OUTGOING_TIMEOUT_S).status_code)
        except httpx.HTTPError as exc:
            statuses.append(None)
            _log.warning("desk_sim.webhook_failed", url=url, error=type(exc).__name__)
    return statuses


class DeskSimulator:
    """The service-desk simulator on a real socket, served from a background thread.

    Example:
        >>> with DeskSimulator(port=0, seed=1) as sim:
        ...     sim.url.startswith("http://127.0.0.1:")
        True

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one (see :attr:`url`).
        seed: seed of the random fault draws.
        credentials: what the desks accept (defaults in docs/desk-simulator.md).
        faults: the start-up fault switches.
        max_body_bytes: larger request bodies are answered 413.
        tls: serve HTTPS with this server context (tests of certificate verification).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        credentials: DeskCredentials | None = None,
        faults: FaultConfig | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._address = (host, port)
        self._max_body_bytes = max_body_bytes
        self._tls = tls
        self.app = DeskApp(credentials=credentials, faults=faults, seed=seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server.

        Raises:
            RuntimeError: the simulator is not started.
        """
        if self._server is None:
            raise RuntimeError("DeskSimulator is not started; call start() or use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host!s}:{port}"

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = _Server(self._address, self.app, self._max_body_bytes)
        if self._tls is not None:
            # A failed handshake raises from accept(); socketserver logs nothing and serves on.
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                        name="desk-sim", daemon=True)
        self._thread.start()
        _log.info("desk_sim.started", url=self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake held requests, close every connection and the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None
        _log.info("desk_sim.stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def set_faults(self, config: FaultConfig | None = None, **changes: float) -> FaultConfig:
        """Replace the fault switches: a whole ``FaultConfig``, or named switches over the current ones.

        Raises:
            FaultConfigError: an unknown switch or an out-of-range value.
        """
        base = config or FaultConfig(**self.app.fault_state()["faults"])
        new = base.updated(changes) if changes else base
        self.app.set_faults(new)
        return new

    def fail_next(self, outcomes: list[Outcome | dict[str, Any]]) -> None:
        """Replace the queue of forced outcomes (see :meth:`DeskApp.fail_next`)."""
        self.app.fail_next(outcomes)

    def tickets(self, desk: Desk | str | None = None) -> list[dict[str, Any]]:
        """Every ticket (of ``desk`` if given) with its ordered history, as in ``GET /_sim/tickets``."""
        held: list[dict[str, Any]] = self.app.tickets(Desk(desk) if desk is not None else None)["tickets"]
        return held

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The most recent requests with the status returned, oldest first."""
        return self.app.requests(limit)

    def reset(self) -> None:
        """Forget everything received; faults and seed back to the start-up values."""
        self.app.reset()

    def act(self, desk: Desk | str, ticket_id: str, action: str, *, actor: str = "agent-4711",
            text: str | None = None, assignee: str | None = None) -> dict[str, Any]:
        """A person acts in the desk (see ``/_sim/act``); PagerDuty's webhook is sent before this returns."""
        result = self.app.act(Desk(desk), ticket_id, action, actor=actor, now=datetime.now(UTC), text=text,
                              assignee=assignee)
        result["webhooks"] = deliver_outgoing(self.app)
        return result

    def set_settings(self, *, search_lag_s: float | None = None, pagerduty_webhook_url: str | None = None) -> None:
        """Jira's search lag and PagerDuty's webhook subscriber (see ``POST /_sim/settings``)."""
        self.app.set_settings(search_lag_s=search_lag_s, pagerduty_webhook_url=pagerduty_webhook_url)

    def add_record(self, table: str, fields: dict[str, str]) -> str:
        """Add a ServiceNow record (``sys_user``, ``cmdb_ci``, ``cmn_location``); returns its sys_id."""
        return self.app.add_record(table, fields)
