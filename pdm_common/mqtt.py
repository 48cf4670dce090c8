"""The paho-mqtt adapter shared by the edge agent and the cloud bridge.

A thin shell with no decisions about payloads: it connects (MQTT 5 or 3.1.1, TLS, username/password
or client certificates), keeps a persistent session (``clean_start=False`` with a session expiry),
re-subscribes on every connect, publishes a retained birth message and registers a Last Will, and
reconnects with jittered exponential backoff from ONE supervised network thread it owns. That
thread runs paho's ``loop()`` in short slices and stamps a heartbeat after each, so a watchdog can
tell a wedged network loop from a broker that is merely down.

Every socket operation happens on that thread. Other threads (the agent's main loop publishing
and acknowledging) only append packets to paho's queue and wake the thread through paho's
loopback socket pair; without ``on_socket_register_write`` paho would write to the TCP socket from
the calling thread, racing the network thread (two threads popping and partially writing packets of
one stream). The socket pair is closed by the network thread as it ends, under the lock that
publishers take, so a late publish is refused (:class:`MqttNotConnected`) instead of writing to a
closed descriptor (``OSError: [Errno 9]``, issue 13).

Acknowledgements (MQTT 5.0 §4.9 flow control): with ``defer_ack=True`` the consumer acknowledges
each QoS 1 message itself (:meth:`MqttClient.ack`) once it is processed or durably queued, and the
client announces ``receive_maximum`` in CONNECT, so the broker never has more than that many
unacknowledged messages in flight towards us: a slow consumer slows intake and the rest waits in
the broker's session queue. Across a reconnect with the session resumed, the broker resends the
unacknowledged ones with DUP set and their original packet ids (§4.4); a redelivery of a message
the consumer still holds, or has already acknowledged on a connection that died, is recognised by
packet id and content and not delivered a second time.

The broker's side of that window is not trusted: Mosquitto 2.0.11 (Debian bookworm's) releases up
to ``receive_maximum`` more messages for each PUBACK of the oldest one in flight, so a backlog
arrived almost whole (issue 13: 36,900 of 40,000 messages in the agent's memory at once; the
embedded 3.1.1 broker has no window at all). While the consumer holds ``receive_maximum``
unacknowledged messages the network thread stops reading the socket, still writing (acks,
publishes) and keeping the connection alive: TCP flow control then holds the rest at the broker.
It reads again once the consumer is down to half the window, so reads and acks go in runs rather
than one wakeup per message.

A clean stop can leave a last retained word, the *farewell* (the agent's ``offline`` status):
:meth:`MqttClient.stop` hands it to the network thread, which publishes it after everything it
queued itself, the birth of the connection included, waits for the broker's PUBACK and only then
sends DISCONNECT. Published from the stopping thread instead, a stop that landed between CONNACK and
the birth let the birth overtake it: the broker kept ``online`` for a stopped gateway, and the clean
DISCONNECT discarded the Last Will that would have corrected it. A farewell the broker does not
acknowledge in time is not followed by DISCONNECT: the connection is dropped, so the broker
publishes the Last Will instead.

Exceptions::

    MqttError
    ├── MqttNotConnected   publish while offline (retryable: keep it in the outbox)
    └── MqttAuthError      the broker refused our credentials (permanent until the config is fixed)
"""

from __future__ import annotations

import contextlib
import random
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pdm_common.backoff import Backoff
from pdm_common.errors import Redeliver
from pdm_common.logs import get_logger
from pdm_common.topics import DEFAULT_PREFIX

__all__ = [
    "InboundMessage",
    "MqttAuthError",
    "MqttClient",
    "MqttError",
    "MqttNotConnected",
    "MqttSettings",
    "Redeliver",
    "TlsSettings",
    "WillMessage",
]

_log = get_logger(__name__)

# CONNACK reason codes that no retry will fix (MQTT 5.0 §3.2.2.2; 3.1.1 return codes 4 and 5).
_AUTH_REFUSED = {0x86, 0x87, 0x8C, 4, 5}
_LOOP_SLICE_S = 0.5
"""How long one paho ``loop()`` call may block; bounds heartbeat staleness and stop latency."""
_DISCONNECT_FLUSH_S = 2.0
"""Longest :meth:`MqttClient.stop` waits for the farewell's PUBACK, then for DISCONNECT to be written."""


class MqttError(Exception):
    """Root of the MQTT adapter's exceptions."""


class MqttNotConnected(MqttError):
    """Not connected to the broker now; the caller keeps the message and retries after reconnect."""


class MqttAuthError(MqttError):
    """The broker refused the credentials; fix username/password or certificates."""


class TlsSettings(BaseModel):
    """TLS towards the broker. Client certificates are used when ``cert_file`` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(False, description="connect with TLS (port 8883 by convention)")
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker certificate")
    cert_file: Path | None = Field(None, description="client certificate (PEM) for certificate auth")
    key_file: Path | None = Field(None, description="private key of the client certificate (PEM)")
    insecure: bool = Field(False, description="skip host-name verification; never in production")

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class MqttSettings(BaseModel):
    """Broker connection settings, embedded as ``[mqtt]`` in each service's config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port: 1883 plain, 8883 TLS")
    protocol: Literal["5", "3.1.1"] = Field("5", description='MQTT version: "5" or "3.1.1"')
    client_id: str | None = Field(None, max_length=128, description="MQTT client id; defaults per service")
    username: str | None = Field(None, description="broker user name")
    password: SecretStr | None = Field(None, description="broker password; prefer password_file")
    password_file: Path | None = Field(None, description="file holding the broker password (systemd credential)")
    tls: TlsSettings = Field(default_factory=TlsSettings)
    keepalive_s: int = Field(30, ge=5, le=65535, description="MQTT keep-alive interval in seconds")
    session_expiry_s: int = Field(
        86_400, ge=0, le=4_294_967_295, description="how long the broker keeps our session while we are away"
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay ceiling")
    reconnect_max_s: float = Field(60.0, gt=0, description="largest reconnect delay")
    receive_maximum: int = Field(
        100, ge=1, le=65_535,
        description="MQTT 5 Receive Maximum: QoS 1 messages the broker may have in flight to us, unacknowledged",
    )
    topic_prefix: str = Field(DEFAULT_PREFIX, min_length=1, description="topic prefix, default pdm/v1")

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def resolved_password(self) -> str | None:
        """The password, read from ``password_file`` when that is set."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return self.password.get_secret_value() if self.password is not None else None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as received, before any parsing.

    ``mid`` and ``session`` identify it for :meth:`MqttClient.ack` (packet id, and which broker
    session delivered it); tests and replays that build messages by hand leave them at 0.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime
    mid: int = 0
    session: int = 0


@dataclass(frozen=True, slots=True)
class WillMessage:
    """A message registered with the broker (Last Will) or sent on every connect (birth)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttClient:
    """One broker connection with a supervised reconnect loop on its own thread.

    ``on_message`` runs on the network thread. By default the broker receives PUBACK only after it
    returns, so a consumer that must not lose messages persists them before returning; with
    ``defer_ack=True`` the consumer calls :meth:`ack` itself later, from any thread, in the order
    the messages arrived. When ``on_message`` raises, the message is NOT acknowledged: the client
    stops handling messages, disconnects and reconnects, and the broker redelivers from the
    persistent session (MQTT 5.0 §4.4). ``on_publish_ack(mid)`` fires when the broker acknowledged
    a QoS 1 publish, ``on_publish_refused(mid, reason)`` when it answered with a failure reason code
    (MQTT 5 PUBACK ≥ 0x80, e.g. not authorized or quota exceeded).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: Callable[[InboundMessage], None] | None = None,
        will: WillMessage | None = None,
        birth: WillMessage | None = None,
        on_connect: Callable[[], None] | None = None,
        on_publish_ack: Callable[[int], None] | None = None,
        on_publish_refused: Callable[[int, str], None] | None = None,
        defer_ack: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._subscriptions = tuple(subscriptions)
        self._on_message_cb = on_message
        self._on_connect_cb = on_connect
        self._on_publish_ack = on_publish_ack
        self._on_publish_refused = on_publish_refused
        self._defer_ack = defer_ack
        self._birth = birth
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._rng = rng or random.Random()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._farewell: WillMessage | None = None  # set by stop() before _stopping, read by the network thread
        self._thread: threading.Thread | None = None
        self._auth_failed = False
        self._refusing = False
        self._pending_subscriptions: set[int] = set()
        self._heartbeat = time.monotonic()
        # Guards the socket pair's teardown against publishers and ackers on other threads.
        self._io_lock = threading.Lock()
        self._closed = False
        # Deferred acks: which packet ids the consumer holds and which it acknowledged recently,
        # with a digest of topic and payload, to recognise redeliveries (module docstring).
        self._ack_lock = threading.Lock()
        self._wake = threading.Event()  # the window half empty, a publish or stop(): for a paused reader
        self._paused = False  # the network thread reads nothing (module docstring); its own flag
        self._session = 0
        self._held: dict[int, int] = {}
        self._acked: OrderedDict[int, int] = OrderedDict()
        self.redeliveries_skipped = 0
        self.connects = 0
        v5 = settings.protocol == "5"
        self._v5 = v5
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        self._configure(will)

    def _configure(self, will: WillMessage | None) -> None:
        s = self._settings
        if s.username is not None:
            self._client.username_pw_set(s.username, s.resolved_password())
        if s.tls.enabled:
            # What paho's tls_set() builds, in a context that remembers the sockets it wraps: paho
            # leaves the socket of a failed handshake open (a wrong CA, a plain-text port), and
            # _run() closes it instead of leaving it to the garbage collector.
            context = _TrackingContext(ssl.PROTOCOL_TLS_CLIENT)
            if s.tls.cert_file is not None:
                context.load_cert_chain(str(s.tls.cert_file), str(s.tls.key_file) if s.tls.key_file else None)
            context.verify_mode = ssl.CERT_REQUIRED
            if s.tls.ca_file is not None:
                context.load_verify_locations(str(s.tls.ca_file))
            else:
                context.load_default_certs()
            self._tls_context: _TrackingContext | None = context
            self._client.tls_set_context(context)
            self._client.tls_insecure_set(s.tls.insecure)
        else:
            self._tls_context = None
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        # Registering for writes (a no-op here) makes paho queue packets for the network thread
        # instead of writing them from the publishing thread (module docstring).
        self._client.on_socket_register_write = _no_write_callback
        # A bounded in-flight window: QoS 1 messages beyond it wait in paho's queue (MQTT 5 Receive Maximum).
        self._client.max_inflight_messages_set(100)

    # --- public surface -------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True from the acknowledgement of every subscription (or CONNACK, without any) to the next disconnect."""
        return self._connected.is_set()

    @property
    def auth_failed(self) -> bool:
        """True after the broker refused our credentials (cleared by a successful connect)."""
        return self._auth_failed

    @property
    def unacknowledged(self) -> int:
        """Messages handed to the consumer with ``defer_ack=True`` and not yet acknowledged."""
        return len(self._held)

    def heartbeat_age_s(self) -> float:
        """Seconds since the network thread last completed a loop slice (large = wedged)."""
        return time.monotonic() - self._heartbeat

    def start(self) -> None:
        """Start the network thread; it connects in the background and reconnects until stopped."""
        if self._thread is not None:
            raise RuntimeError("MqttClient.start() called twice")
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or ``timeout_s`` passed; True when connected."""
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Publish and return the message id (matched by ``on_publish_ack`` for QoS 1).

        Raises:
            MqttNotConnected: offline now; keep the message and try again after reconnect.
        """
        with self._io_lock:
            if self._closed or not self._connected.is_set():
                raise MqttNotConnected(f"not connected to {self._settings.host}:{self._settings.port}")
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        self._wake.set()
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttNotConnected(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        return int(info.mid)

    def ack(self, msg: InboundMessage) -> None:
        """Acknowledge a message received with ``defer_ack=True`` (QoS 0 needs none; call in arrival order).

        An ack for a message of a session the broker no longer has is dropped (nothing to
        acknowledge); one that cannot be sent because the connection just died is remembered, and
        the broker's redelivery is then acknowledged without delivering it again.
        """
        if msg.qos == 0 or msg.mid == 0:
            return
        with self._ack_lock:
            if msg.session != self._session:
                return
            self._held.pop(msg.mid, None)
            self._acked[msg.mid] = hash((msg.topic, msg.payload))
            self._acked.move_to_end(msg.mid)
            # Only acks sent while the connection was dying can be missing at the broker, and it
            # has at most receive_maximum messages in flight: twice that is a safe memory.
            while len(self._acked) > 2 * self._settings.receive_maximum:
                self._acked.popitem(last=False)
            reopened = 2 * len(self._held) <= self._settings.receive_maximum
        with self._io_lock:
            if not self._closed:
                self._client.ack(msg.mid, msg.qos)
        if reopened:
            self._wake.set()

    def stop(self, timeout_s: float = 5.0, *, farewell: WillMessage | None = None) -> None:
        """Disconnect cleanly (the broker does not publish the Last Will) and join the thread.

        The network thread sends DISCONNECT itself after everything queued before it and closes its
        sockets; nothing here touches them.

        Args:
            farewell: the last message of the connection (the agent's retained ``offline`` status).
                The network thread publishes it after the connection's birth, and sends DISCONNECT
                once the broker acknowledged it; when it is not acknowledged within
                ``_DISCONNECT_FLUSH_S``, or the client is not connected, no DISCONNECT is sent and
                the broker publishes the Last Will instead (module docstring).
        """
        self._farewell = farewell
        self._stopping.set()
        self._wake.set()
        with self._io_lock:
            wake = None if self._closed else self._client._sockpairW
            if wake is not None:
                # Interrupt the network thread's select() now rather than at the end of its slice;
                # the loopback pair is paho's own wake-up channel (what publish() writes to).
                with contextlib.suppress(OSError):
                    wake.send(b"\0")
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._connected.clear()

    # --- network thread -------------------------------------------------------------------------

    def _connect_properties(self) -> Properties | None:
        if not self._v5:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = self._settings.receive_maximum
        return props

    def _first_connect(self) -> None:
        s = self._settings
        if self._v5:
            self._client.connect(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=self._connect_properties()
            )
        else:  # 3.1.1: the persistent session comes from clean_session=False given to the constructor
            self._client.connect(s.host, s.port, keepalive=s.keepalive_s)

    def _sleep(self, delay_s: float) -> None:
        """Wait out a backoff in slices, stamping the heartbeat: backing off is progress, not a wedge."""
        deadline = time.monotonic() + delay_s
        while not self._stopping.is_set():
            self._heartbeat = time.monotonic()
            left = deadline - self._heartbeat
            if left <= 0:
                return
            self._stopping.wait(min(left, _LOOP_SLICE_S))

    def _run(self) -> None:
        attempt = 0
        socket_open = False
        while not self._stopping.is_set():
            self._heartbeat = time.monotonic()
            if not socket_open:
                try:
                    if self.connects == 0 and attempt == 0:
                        self._first_connect()
                    else:
                        self._client.reconnect()
                    socket_open = True
                except (OSError, ssl.SSLError) as exc:
                    if self._tls_context is not None:
                        self._tls_context.close_unused(self._client.socket())
                    delay = self._backoff.delay(attempt, self._rng)
                    _log.warning(
                        "mqtt.connect_failed",
                        host=self._settings.host,
                        port=self._settings.port,
                        error=str(exc),
                        retry_in_s=round(delay, 2),
                        action="check that the broker runs and host/port/TLS settings are right",
                    )
                    attempt += 1
                    self._sleep(delay)
                    continue
            rc = self._loop_without_reading() if self._window_full() else self._client.loop(timeout=_LOOP_SLICE_S)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if self._connected.is_set():
                    attempt = 0
                continue
            socket_open = False
            self._connected.clear()
            if self._stopping.is_set():
                break
            # Auth refusals are permanent until someone fixes the config: wait the longest delay
            # instead of hammering the broker (Home Assistant MQTT does the same).
            delay = self._backoff.cap_s if self._auth_failed else self._backoff.delay(attempt, self._rng)
            attempt += 1
            _log.warning(
                "mqtt.connection_lost",
                host=self._settings.host,
                port=self._settings.port,
                reason=paho.error_string(rc),
                retry_in_s=round(delay, 2),
            )
            self._sleep(delay)
        self._close(socket_open)

    def _window_full(self) -> bool:
        """Whether to leave the socket unread: from ``receive_maximum`` messages held to half of it."""
        if self._defer_ack:
            held, window = len(self._held), self._settings.receive_maximum
            self._paused = held >= window or (self._paused and 2 * held > window)
        return self._paused

    def _loop_without_reading(self) -> MQTTErrorCode:
        """One slice with the socket left unread: send what is queued, keep alive, wait for an ack.

        paho's keep-alive counts inbound silence too: a pause longer than twice ``keepalive_s`` (a
        consumer that acks nothing for that long) drops the connection, and the broker resends the
        unacknowledged window on reconnect, recognised as redeliveries.
        """
        self._wake.wait(_LOOP_SLICE_S)
        self._wake.clear()
        if self._client.want_write():
            rc = self._client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return self._client.loop_misc()

    def _close(self, socket_open: bool) -> None:
        """Say the farewell and DISCONNECT after whatever is queued, then close every socket (network thread only)."""
        try:
            if socket_open and self._client.is_connected():
                deadline = time.monotonic() + _DISCONNECT_FLUSH_S
                if self._say_farewell(deadline):
                    self._client.disconnect()
                # paho closes the TCP socket itself once DISCONNECT is written.
                while self._client.socket() is not None and time.monotonic() < deadline:
                    if self._client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
            elif self._farewell is not None:
                _log.info("mqtt.farewell_not_sent", topic=self._farewell.topic[:200], reason="not connected")
        finally:
            self._connected.clear()
            with self._io_lock:
                self._closed = True
                # paho 2.x closes its socket and its loopback wake-up socket pair only in __del__,
                # which for this reference cycle runs whenever the cyclic collector gets to it; close
                # them now. paho has no public call for this (reinitialise() would also reset the client).
                self._client._reset_sockets()

    def _say_farewell(self, deadline: float) -> bool:
        """Publish the farewell and wait for its PUBACK; False when DISCONNECT must not follow (no ack)."""
        farewell = self._farewell
        if farewell is None:
            return True
        info = self._client.publish(farewell.topic, farewell.payload, qos=farewell.qos, retain=farewell.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            while time.monotonic() < deadline:
                if self._client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                if info.is_published():  # QoS 0: written; QoS 1: acknowledged
                    return True
        _log.warning("mqtt.farewell_unacknowledged", topic=farewell.topic[:200],
                     action="left to the broker's Last Will: the connection is dropped without DISCONNECT")
        return False

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _handle_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            code = reason.value
            self._auth_failed = code in _AUTH_REFUSED
            _log.error(
                "mqtt.connect_refused",
                host=self._settings.host,
                reason=str(reason),
                action="fix username/password or client certificate and the broker ACL"
                if self._auth_failed
                else "check the broker log",
            )
            client.disconnect()
            return
        self._auth_failed = False
        self._refusing = False
        self.connects += 1
        if not _session_present(flags):
            # The broker has no session for us: packet ids of messages still held by the consumer
            # mean nothing to it any more, and nothing will be redelivered.
            with self._ack_lock:
                self._session += 1
                self._held.clear()
                self._acked.clear()
        # "Connected" means subscribed: until the SUBACKs arrive the broker may drop what is published
        # for us, so wait_connected() and on_connect wait for them (MQTT 5.0 §3.9).
        mids = (client.subscribe(topic, qos=qos)[1] for topic, qos in self._subscriptions)
        self._pending_subscriptions = {mid for mid in mids if mid is not None}
        if self._birth is not None:
            client.publish(self._birth.topic, self._birth.payload, qos=self._birth.qos, retain=self._birth.retain)
        if not self._pending_subscriptions:
            self._ready()

    def _handle_subscribe(self, _client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode],
                          _props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            _log.error("mqtt.subscribe_refused", reasons=refused,
                       action="check the broker ACL allows this client to read its topics")
        self._pending_subscriptions.discard(mid)
        if not self._pending_subscriptions and not self._connected.is_set():
            self._ready()

    def _ready(self) -> None:
        self._connected.set()
        s = self._settings
        _log.info("mqtt.connected", host=s.host, port=s.port, protocol=s.protocol)
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _handle_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                           _props: Any) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            _log.info("mqtt.disconnected", reason=str(reason))

    def _handle_message(self, client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message_cb is None:
            if msg.qos > 0:
                client.ack(msg.mid, msg.qos)
            return
        if self._refusing:
            return  # after a failed handler nothing is acknowledged until the session is resumed
        topic, payload = msg.topic, bytes(msg.payload)
        if self._defer_ack and msg.qos > 0 and self._redelivered(client, msg.mid, msg.dup, hash((topic, payload))):
            return
        inbound = InboundMessage(topic, payload, msg.qos, bool(msg.retain), datetime.now(UTC), msg.mid, self._session)
        try:
            self._on_message_cb(inbound)
        except Exception as exc:  # neither kill the network thread nor acknowledge what was not handled
            self._refusing = True
            if isinstance(exc, Redeliver):
                _log.warning("mqtt.left_for_redelivery", topic=msg.topic[:200], reason=str(exc)[:300],
                             action="message not acknowledged; reconnecting so the broker redelivers it")
            else:
                _log.exception("mqtt.handler_failed", topic=msg.topic[:200],
                               action="message not acknowledged; reconnecting so the broker redelivers it")
            with self._ack_lock:
                self._held.pop(msg.mid, None)
            client.disconnect()
            return
        if msg.qos > 0 and not self._defer_ack:
            client.ack(msg.mid, msg.qos)

    def _redelivered(self, client: paho.Client, mid: int, dup: bool, digest: int) -> bool:
        """Track a deferred-ack message; True when it is a redelivery not to hand over again."""
        with self._ack_lock:
            if dup and self._held.get(mid) == digest:
                self.redeliveries_skipped += 1
                return True  # the consumer still holds it; its ack will cover this copy
            if dup and self._acked.get(mid) == digest:
                self.redeliveries_skipped += 1
                client.ack(mid, 1)  # handled, but the ack died with the old connection
                return True
            self._acked.pop(mid, None)  # the packet id was reused for a new message
            self._held[mid] = digest
            return False

    def _handle_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode,
                        _props: Any) -> None:
        if reason.is_failure:
            if self._on_publish_refused is not None:
                self._on_publish_refused(mid, str(reason))
            else:
                _log.error("mqtt.publish_refused", mid=mid, reason=str(reason),
                           action="check the broker ACL allows this client to publish on the topic")
            return
        if self._on_publish_ack is not None:
            self._on_publish_ack(mid)


class _TrackingContext(ssl.SSLContext):
    """An SSL context that keeps the last socket it wrapped, so that a failed handshake's can be closed."""

    last: ssl.SSLSocket | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.last = super().wrap_socket(*args, **kwargs)
        return self.last

    def close_unused(self, in_use: object) -> None:
        """Close the last wrapped socket unless it is the one paho kept (``in_use``)."""
        last, self.last = self.last, None
        if last is not None and last is not in_use:
            last.close()


def _no_write_callback(_client: paho.Client, _userdata: Any, _sock: Any) -> None:
    """paho's write-registration hook, set only so that paho never writes from a publishing thread."""


def _session_present(flags: Any) -> bool:
    """The CONNACK's session-present flag (paho 2 passes a ConnectFlags object)."""
    return bool(getattr(flags, "session_present", False))
