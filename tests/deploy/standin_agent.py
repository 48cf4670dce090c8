"""A stand-in for ``edge-agent run``'s main loop, wired exactly as the agent must wire systemd.

Run as ``python -m tests.deploy.standin_agent HOST PORT PROTOCOL`` under a NOTIFY_SOCKET. A
message on ``WEDGE_TOPIC`` blocks the MQTT network thread forever (as a hung disk write in
``on_message`` would), so the watchdog must stop being fed.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Literal, cast

from pdm_common.logs import configure_logging
from pdm_common.mqtt import InboundMessage, MqttClient, MqttSettings
from pdm_common.systemd import Liveness, Notifier, Watchdog

WEDGE_TOPIC = "pdm/v1/standin/wedge"
MQTT_STALL_LIMIT_S = 2.0
"""Four of MqttClient's 0.5 s loop slices: a live network thread stamps its heartbeat far more often."""
LOOP_PERIOD_S = 0.05


def main(host: str, port: int, protocol: Literal["5", "3.1.1"]) -> int:
    """Connect, report READY, feed the watchdog while live; STOPPING on SIGTERM."""
    configure_logging(level="info")
    stop = threading.Event()
    wedged = threading.Event()

    def on_message(msg: InboundMessage) -> None:
        if msg.topic == WEDGE_TOPIC:
            wedged.wait()  # never set: the network thread is stuck from here on

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    settings = MqttSettings(host=host, port=port, protocol=protocol, session_expiry_s=0)
    client = MqttClient(settings, client_id="standin-agent", subscriptions=[(WEDGE_TOPIC, 1)], on_message=on_message)
    with Notifier() as notifier:
        watchdog = Watchdog(notifier, [Liveness("mqtt", client.heartbeat_age_s, max_age_s=MQTT_STALL_LIMIT_S)])
        client.start()
        if not client.wait_connected(10.0):
            return 1
        notifier.ready("connected")
        while not stop.is_set():
            watchdog.beat(healthy=True)
            stop.wait(LOOP_PERIOD_S)
        notifier.stopping()
    client.stop(timeout_s=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), cast(Literal["5", "3.1.1"], sys.argv[3])))
