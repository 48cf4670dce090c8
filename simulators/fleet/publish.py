"""Publish a fleet run as Telemetry over MQTT (paho-mqtt), paced on simulated time or as fast as possible.

One publisher connection stands in for all the fleet's sensors. Each record goes to
``{prefix}/{site}/{asset}/telemetry`` with the payload of :meth:`pdm_common.contracts.Telemetry.to_json`
(``ts`` in epoch milliseconds, no site or asset). At most ``IN_FLIGHT_WINDOW`` publishes are
unacknowledged at any time, so memory stays bounded however fast the producer is.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pdm_common.logs import get_logger
from pdm_common.topics import AssetChannel, Topics
from simulators.fleet.errors import PublishError
from simulators.fleet.runner import FleetRun

__all__ = ["CONNECT_TIMEOUT_S", "IN_FLIGHT_WINDOW", "PUBLISH_TIMEOUT_S", "publish_run"]

_log = get_logger(__name__)

IN_FLIGHT_WINDOW = 200
"""Unacknowledged publishes before the producer waits: enough to fill a LAN link, small enough that a
stalled broker costs < 100 kB of queued payloads. Mosquitto's default max_inflight_messages is 20 per
client for QoS>0; paho queues the rest locally, bounded by this window."""
CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 30.0
"""A publish not acknowledged in 30 s means the broker is gone; retrying is the caller's decision."""
KEEPALIVE_S = 30
MAX_SLEEP_S = 1.0
"""Pacing sleeps in slices so a long simulated gap stays interruptible."""
PROGRESS_EVERY = 1000


def _encode(record: dict[str, Any]) -> bytes:
    payload = {"ts": record["ts"], "seq": record["seq"], "kind": record["kind"], "metrics": record["metrics"]}
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _connect(host: str, port: int, protocol: Literal["5", "3.1.1"]) -> mqtt.Client:
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pdm-sim-fleet-{os.getpid()}", protocol=version
    )
    client.max_inflight_messages_set(IN_FLIGHT_WINDOW)
    connected = threading.Event()
    outcome: dict[str, str] = {}

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None) -> None:
        outcome["reason"] = str(reason)
        outcome["ok"] = "yes" if not reason.is_failure else "no"
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=KEEPALIVE_S)
    except OSError as exc:
        raise PublishError(f"cannot reach MQTT broker {host}:{port}: {exc}") from None
    client.loop_start()
    if not connected.wait(CONNECT_TIMEOUT_S) or outcome.get("ok") != "yes":
        client.loop_stop()
        reason = outcome.get("reason", f"no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")
        raise PublishError(f"MQTT broker {host}:{port} refused the connection (protocol {protocol}): {reason}")
    _log.info("fleet.mqtt.connected", host=host, port=port, protocol=protocol)
    return client


def _settle(info: mqtt.MQTTMessageInfo) -> None:
    try:
        info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
    except (RuntimeError, ValueError) as exc:
        raise PublishError(f"publish failed: {exc}") from None
    if not info.is_published():
        raise PublishError(f"publish not acknowledged within {PUBLISH_TIMEOUT_S:.0f} s; is the broker alive?")


def publish_run(
    run: FleetRun,
    host: str,
    port: int,
    *,
    protocol: Literal["5", "3.1.1"] = "5",
    topic_prefix: str = "pdm/v1",
    qos: Literal[0, 1] = 1,
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Publish every record of ``run`` to the broker at ``host:port``.

    Args:
        run: the fleet run (see :func:`simulators.fleet.runner.generate`).
        host: broker host.
        port: broker port.
        protocol: MQTT version, ``"5"`` or ``"3.1.1"`` (the embedded amqtt broker speaks only 3.1.1).
        topic_prefix: topic prefix, default ``pdm/v1``.
        qos: 0 or 1.
        speed: simulated seconds per wall-clock second (3600 = an hour a second); None publishes as fast
            as the in-flight window allows.
        progress: called as ``progress(done, total)`` every 1000 records and at the end.

    Returns:
        The number of records published.

    Raises:
        PublishError: the broker is unreachable, refuses the connection, or stops acknowledging.
        ValueError: ``speed`` is not positive.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (simulated seconds per wall second) or None")
    topics = Topics(topic_prefix)
    total = run.n_records
    client = _connect(host, port, protocol)
    window: deque[mqtt.MQTTMessageInfo] = deque()
    done = 0
    wall0 = time.monotonic()
    ts0: int | None = None
    try:
        for record in run.iter_records():
            if speed is not None:
                ts0 = record["ts"] if ts0 is None else ts0
                due = wall0 + (record["ts"] - ts0) / 1000.0 / speed
                while (delay := due - time.monotonic()) > 0:
                    time.sleep(min(delay, MAX_SLEEP_S))
            topic = topics.asset(record["site"], record["asset"], AssetChannel.TELEMETRY)
            info = client.publish(topic, _encode(record), qos=qos)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
            window.append(info)
            if len(window) >= IN_FLIGHT_WINDOW:
                _settle(window.popleft())
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, total)
        while window:
            _settle(window.popleft())
    finally:
        client.disconnect()
        client.loop_stop()
    if progress is not None:
        progress(done, total)
    _log.info("fleet.mqtt.published", records=done, host=host, port=port, qos=qos)
    return done
