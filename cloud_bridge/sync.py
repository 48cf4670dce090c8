"""Two-way sync: what people do in the desks flows back to the alert on the edge as signed commands.

Zendesk, Jira SM and ServiceNow are polled every ``sync.poll_s`` (:meth:`DeskAdapter.poll_changes`,
from a cursor kept in the outbox, re-reading ``sync.overlap_s`` to cover clock skew and Jira's
eventually consistent search); PagerDuty pushes webhooks v3 to a small listener
(``POST /webhooks/<desk name>`` on ``sync.listen_host:listen_port``, ``X-PagerDuty-Signature`` checked
against the desk's ``hmac_secret``). Each change of a ticket the bridge tracks becomes at most one
command (:func:`cloud_bridge.commands.command_for`), signed with ``[commands]`` (``Command.signed``,
fresh for 300 s at the agent) and published with QoS 1 on ``pdm/v1/{site}/{asset}/cmd``. A change
the bridge already acted on (same status, same assignee, same change id) is not sent again; a
publish that fails leaves the change for the next poll. A desk acknowledgement also keeps the SLA
promise (no warning). The bridge's own writes are never taken for a person's: adapters drop changes
by the bridge's own user.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud_bridge.commands import command_for, message_id
from cloud_bridge.config import BridgeSettings, DeskKind
from cloud_bridge.desks.base import ChangeKind, DeskAdapter, DeskChange
from cloud_bridge.errors import DeliveryError, OutboxError
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.outbox import DeskState, Outbox
from pdm_common.contracts import site_of_alert_id
from pdm_common.logs import get_logger
from pdm_common.topics import AssetChannel, Topics

__all__ = ["DeskSync", "pagerduty_change"]

_log = get_logger(__name__)

MAX_SEEN_CHANGES = 10_000
"""Change ids remembered to skip repeats within the poll overlap (bounded; the agent's replay guard is the backstop)."""

MAX_WEBHOOK_BYTES = 256 * 1024
"""A PagerDuty v3 event is a few KiB; larger bodies are refused."""

_PD_KINDS = {"incident.acknowledged": ChangeKind.ACKNOWLEDGED, "incident.resolved": ChangeKind.RESOLVED,
             "incident.reassigned": ChangeKind.REASSIGNED, "incident.annotated": ChangeKind.COMMENTED}


def _pd_signature_ok(secret: str, body: bytes, header: str) -> bool:
    """PagerDuty webhooks v3: ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret, body)>[,v1=…]`` (rotation)."""
    expected = "v1=" + hmac.new(secret.encode(), body, sha256).hexdigest()
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


def pagerduty_change(event: Mapping[str, Any], incident_keys: dict[str, str]) -> DeskChange | None:
    """The change a PagerDuty v3 webhook event reports, with the incident's dedup key as ticket reference.

    ``incident_keys`` maps incident ids to dedup keys (learned from events that carry ``incident_key``;
    a note event names only the incident).
    """
    body = event.get("event", {})
    kind = _PD_KINDS.get(str(body.get("event_type")))
    data = body.get("data", {}) if isinstance(body.get("data"), dict) else {}
    incident_id = str(data.get("incident", {}).get("id") if data.get("type") == "incident_note" else data.get("id"))
    if data.get("incident_key"):
        incident_keys[incident_id] = str(data["incident_key"])
    key = incident_keys.get(incident_id)
    if kind is None or key is None:
        return None
    agent = body.get("agent") or {}
    actor = str(agent.get("summary") or agent.get("id") or "pagerduty")
    assignees = data.get("assignees") or [{}]
    return DeskChange(ticket_ref=key, kind=kind, actor=actor, change_id=str(body.get("id")),
                      status=str(data.get("status")) if data.get("status") else None,
                      assignee=str(assignees[0].get("id")) if kind == ChangeKind.REASSIGNED else None,
                      text=str(data.get("content")) if kind == ChangeKind.COMMENTED else None)


class DeskSync:
    """Polls the desks and listens for PagerDuty; turns people's changes into signed commands.

    Args:
        settings: the bridge settings (``[sync]``, ``[commands]``, ``[desks]``).
        outbox: the tickets the bridge tracks, their last seen desk state, the poll cursors.
        adapters: the desk adapters by desk name.
        publish: publishes one payload on a topic with QoS 1 (raises when offline).
        metrics: where commands and polls are counted.
        clock: wall-clock seconds.
    """

    def __init__(self, *, settings: BridgeSettings, outbox: Outbox, adapters: Mapping[str, DeskAdapter],
                 publish: Callable[[str, bytes], None], metrics: BridgeMetrics,
                 clock: Callable[[], float]) -> None:
        self._settings = settings
        self._outbox = outbox
        self._adapters = adapters
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._topics = Topics(settings.mqtt.topic_prefix)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._incident_keys: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self.commands_sent = 0

    @property
    def enabled(self) -> bool:
        """Sync runs when enabled and the bridge has a command key."""
        return self._settings.sync.enabled and self._settings.commands.resolved_secret() is not None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling, and the webhook listener when ``listen_port`` is set."""
        if not self.enabled:
            if self._settings.sync.enabled:
                _log.warning("sync.disabled", reason="no [commands] secret_file",
                             action="set [commands] key_id and secret_file so desk changes reach the edge")
            return
        self._thread = threading.Thread(target=self._loop, name="bridge-sync", daemon=True)
        self._thread.start()
        if self._settings.sync.listen_port:
            self._server = _listener(self)
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="bridge-webhooks", daemon=True).start()
            _log.info("sync.listening", host=self._settings.sync.listen_host, port=self.listen_port)

    @property
    def listen_port(self) -> int | None:
        """The webhook listener's port (useful when configured as 0 … then there is none)."""
        return None if self._server is None else int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop polling and listening."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        while not self._stopping.wait(self._settings.sync.poll_s):
            for name in self._adapters:
                if self._stopping.is_set():
                    return
                self.poll(name)

    # -- polling -----------------------------------------------------------------------------------

    def poll(self, desk: str) -> int:
        """Poll one desk once; returns how many commands were sent."""
        adapter = self._adapters[desk]
        now = self._clock()
        try:
            cursor = self._outbox.sync_cursor(desk)
            since = str(max(0.0, (now if cursor is None else float(cursor)) - self._settings.sync.overlap_s))
            result = adapter.poll_changes(since, now=now)
        except (DeliveryError, OutboxError) as exc:
            self._metrics.sync_polls.labels(desk=desk, outcome="failed").inc()
            _log.warning("sync.poll_failed", desk=desk, error=str(exc)[:300],
                         action="retried at the next poll; check the desk's credentials and rights to read tickets")
            return 0
        self._metrics.sync_polls.labels(desk=desk, outcome="ok").inc()
        states = self._states(desk) if result.changes else {}
        sent = sum(self.apply(desk, change, states) for change in result.changes)
        if result.cursor is not None:
            try:
                self._outbox.set_sync_cursor(desk, result.cursor)
            except OutboxError as exc:
                _log.warning("sync.cursor_failed", desk=desk, error=str(exc)[:200])
        return sent

    def _states(self, desk: str) -> dict[str, DeskState]:
        return {s.ticket_ref: s for s in self._outbox.desk_states(desk)}

    def apply(self, desk: str, change: DeskChange, states: dict[str, DeskState] | None = None) -> int:
        """Act on one change (1 when a command was sent); repeats and untracked tickets are skipped.

        ``states`` are the desk's tracked tickets as read at the start of the poll; what this poll
        changes is kept in them, so two changes of one ticket in one poll see each other.
        """
        key = f"{desk}\x00{change.change_id}"
        with self._lock:
            if key in self._seen:
                return 0
        if states is None:
            states = self._states(desk)
        state = states.get(change.ticket_ref)
        if state is None:
            return 0  # not a ticket of ours (or long forgotten)
        if change.kind in (ChangeKind.RESOLVED, ChangeKind.ACKNOWLEDGED) and state.status == change.kind:
            return 0
        if change.kind == ChangeKind.REASSIGNED and state.assignee == change.assignee:
            return 0
        settings = self._settings
        kind = settings.desks[desk].kind.value
        now = datetime.fromtimestamp(self._clock(), UTC)
        command = command_for(change, desk=desk, desk_kind=kind, alert_id=state.alert_id, now=now,
                              acknowledge_snooze_h=settings.sync.acknowledge_snooze_h)
        owner = site_of_alert_id(state.alert_id)
        sent = 0
        if command is not None and owner is not None:
            secret = settings.commands.resolved_secret() or ""
            signed = command.signed(key_id=settings.commands.key_id, secret=secret,
                                    msg_id=message_id(desk, change.change_id), now_s=int(now.timestamp()))
            topic = self._topics.asset(owner[0], owner[1], AssetChannel.CMD)
            try:
                self._publish(topic, signed.to_json())
            except Exception as exc:  # MqttNotConnected and friends: the change waits for the next poll
                _log.warning("sync.publish_failed", desk=desk, alert_id=state.alert_id, error=str(exc)[:200],
                             action="retried at the next poll once the broker is reachable")
                return 0
            self._metrics.commands.labels(desk=desk, command=command.command.value).inc()
            self.commands_sent += 1
            sent = 1
            _log.info("sync.command_sent", desk=desk, alert_id=state.alert_id, command=command.command.value,
                      issued_by=command.issued_by, until=None if command.until is None else command.until.isoformat())
        try:
            if change.kind in (ChangeKind.ACKNOWLEDGED, ChangeKind.REASSIGNED):
                self._outbox.mark_acknowledged(state.alert_id)
            status = change.kind if change.kind in (ChangeKind.RESOLVED, ChangeKind.ACKNOWLEDGED) else state.status
            assignee = change.assignee or state.assignee
            self._outbox.set_desk_state(state.alert_id, status=status, assignee=assignee)
            states[change.ticket_ref] = DeskState(state.alert_id, state.desk, state.ticket_ref, status, assignee,
                                                  state.resolved)
        except OutboxError as exc:
            _log.warning("sync.state_failed", desk=desk, alert_id=state.alert_id, error=str(exc)[:200])
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > MAX_SEEN_CHANGES:
                self._seen.popitem(last=False)
        return sent

    # -- webhooks ----------------------------------------------------------------------------------

    def webhook(self, desk: str, body: bytes, signature: str | None) -> int:
        """Handle one pushed webhook; the HTTP status to answer."""
        settings = self._settings.desks.get(desk)
        if settings is None or settings.kind is not DeskKind.PAGERDUTY:
            return 404
        secret = settings.resolved_hmac_secret()
        if secret is None or signature is None or not _pd_signature_ok(secret, body, signature):
            _log.warning("sync.webhook_refused", desk=desk, reason="signature",
                         action="set [desks.<name>] hmac_secret_file to the v3 subscription's signing secret")
            return 401
        try:
            event = json.loads(body)
        except ValueError:
            return 400
        change = pagerduty_change(event, self._incident_keys) if isinstance(event, dict) else None
        if change is not None:
            self.apply(desk, change)
        return 202


def _listener(sync: DeskSync) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Silence the access log; refusals are logged as events."""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not self.path.startswith("/webhooks/") or length > MAX_WEBHOOK_BYTES:
                self.send_response(404 if length <= MAX_WEBHOOK_BYTES else 413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            status = sync.webhook(self.path.removeprefix("/webhooks/").strip("/"), body,
                                  self.headers.get("X-PagerDuty-Signature"))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    s = sync._settings.sync
    server = ThreadingHTTPServer((s.listen_host, s.listen_port), Handler)
    server.daemon_threads = True
    return server
