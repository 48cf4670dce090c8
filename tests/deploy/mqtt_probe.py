"""A bare paho-mqtt client for broker tests: connect as an account, publish QoS 1 and read the
PUBACK reason code, subscribe and collect. Deliberately not :class:`pdm_common.mqtt.MqttClient`:
these tests look at what the broker answers, not at how our adapter reacts to it."""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["ACCEPTED", "NOT_AUTHORIZED", "Probe"]

ACCEPTED = frozenset({0x00, 0x10})
"""MQTT 5.0 PUBACK reason codes of an accepted publish: success, and "no matching subscribers" (16)."""

NOT_AUTHORIZED = 0x87
"""MQTT 5.0 reason code 135: the broker's ACL refused the operation."""
_WAIT_S = 10.0


class Probe:
    """One MQTT 5 connection over TLS as ``user``; ``messages`` collects what its subscriptions get."""

    def __init__(self, port: int, ca_file: Path, user: str, password: str, *, client_id: str | None = None,
                 clean_start: bool = True) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self._acks: dict[int, threading.Event] = {}
        self._codes: dict[int, int] = {}
        self._connected = threading.Event()
        self.connect_code: int | None = None
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"probe-{uuid.uuid4().hex[:10]}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.username_pw_set(user, password)
        self._client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        properties = None
        if not clean_start:  # a persistent session: the broker keeps it (and its queue) for an hour
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self._client.connect("localhost", port, keepalive=30, clean_start=clean_start, properties=properties)
        self._client.loop_start()

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, code: ReasonCode, _p: Properties | None) -> None:
        self.connect_code = code.value
        self._connected.set()

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, code: ReasonCode, _p: Properties | None) -> None:
        self._codes[mid] = code.value
        self._acks.setdefault(mid, threading.Event()).set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_connected(self) -> bool:
        """True once the broker accepted the login (CONNACK 0)."""
        return self._connected.wait(_WAIT_S) and self.connect_code == 0

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        done = threading.Event()
        self._client.on_subscribe = lambda *_args: done.set()
        self._client.subscribe(topic, qos=1)
        assert done.wait(_WAIT_S), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1; the PUBACK's reason code (0 accepted, :data:`NOT_AUTHORIZED` refused)."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        event = self._acks.setdefault(info.mid, threading.Event())
        assert event.wait(_WAIT_S), f"no PUBACK for {topic}"
        return self._codes[info.mid]

    def collect(self, until: bytes) -> list[tuple[str, bytes]]:
        """Messages received up to and including the one whose payload is ``until``."""
        seen: list[tuple[str, bytes]] = []
        while True:
            topic, payload, _retain = self.messages.get(timeout=_WAIT_S)
            seen.append((topic, payload))
            if payload == until:
                return seen

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
