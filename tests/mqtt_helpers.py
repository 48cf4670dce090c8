"""Test helpers that talk to the real broker: a recording subscriber and a raw publisher."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from pdm_common.mqtt import InboundMessage, MqttClient, MqttSettings

_ids = itertools.count(1)


def unique_id(prefix: str) -> str:
    """A client id no other test in this session uses."""
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns() % 1_000_000}"


class Recorder:
    """Subscribes to topic filters and records every message it receives."""

    def __init__(self, settings: MqttSettings, *filters: str) -> None:
        self.messages: list[InboundMessage] = []
        self._cond = threading.Condition()
        self.client = MqttClient(settings, client_id=unique_id("recorder"),
                                 subscriptions=[(f, 1) for f in filters], on_message=self._on_message)

    def _on_message(self, msg: InboundMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[InboundMessage]], bool], timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate(messages)`` holds."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def on(self, topic: str) -> list[InboundMessage]:
        """Messages received on exactly ``topic``."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def __enter__(self) -> Self:
        self.client.start()
        if not self.client.wait_connected(10):
            raise RuntimeError("recorder could not connect to the test broker")
        time.sleep(0.2)  # let SUBACK arrive before the test publishes
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.client.stop()


class Publisher:
    """Publishes raw payloads (QoS 1) and waits for the broker's PUBACK."""

    def __init__(self, settings: MqttSettings) -> None:
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        self.client = MqttClient(settings, client_id=unique_id("publisher"), on_publish_ack=self._ack)

    def _ack(self, mid: int) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def send(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish and, for QoS 1, wait for PUBACK."""
        mid = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            return
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acked, 10):
                raise TimeoutError(f"no PUBACK for {topic}")

    def __enter__(self) -> Self:
        self.client.start()
        if not self.client.wait_connected(10):
            raise RuntimeError("publisher could not connect to the test broker")
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.client.stop()
