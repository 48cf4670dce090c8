"""Broker faults (#14.2): the shipped Mosquitto stopped, down for a while and started again under the
real agent and the real bridge, during a fleet run with faults.

One fleet run (seed 20260105), in phases:

1. the first 40 % of the fleet is published (the broker has acknowledged it; the agent is still
   working through it, so part of it waits in the agent's persistent session);
2. the broker stops (SIGTERM: it writes its persistence file) and stays down for
   ``PDM_CHAOS_BROKER_DOWN_S`` seconds (10 in CI; ``make soak`` runs minutes) while the agent goes on
   with what it holds and its alert events wait in its outbox;
3. the broker starts again on the same port with its persistence: the agent's and the bridge's
   sessions resume (clean_start=False), the backlog queued for them is delivered, the rest of the
   fleet is published.

What must hold: every alert the engine raises on this fleet with nothing going wrong reaches the desk
as exactly one ticket, with the same event history (nothing lost, nothing twice, nothing extra); both
services reconnect on their own, log no traceback and stop with exit 0.

Found by this test and fixed: the broker redelivers hundreds of samples per asset that the agent had
already acknowledged (Mosquitto 2.0.11); taken for a clock step back, they were learned again and moved
alert openings (now told apart by ``seq``). And the broker acknowledged, but never queued, alert events
the agent published after the restart and before the bridge had reconnected (a persistent session
restored from the persistence file receives nothing until its client is back): the opening of an
alert was lost with its ticket. The agent's echo (``alert_echo_s``) covers it. Then (2026-12-03, 1 run
in ~3 under load) a ticket without its first two events: the echo brought them after seq 3 had
reached the bridge, which took 3 and refused 1 and 2 as stale; the bridge now holds an event whose
lower seqs are missing for them (``outbox.gap_wait_s``).

The second test restarts the *cloud* broker behind the shipped gateway-to-cloud Mosquitto bridge
(config/mosquitto/bridge-to-cloud.conf): the agent on the gateway broker, the bridge on the cloud
broker. While the cloud is down the gateway broker acknowledges the agent's alert events and queues
them for the link; the link forwards them the moment the cloud is back — to a restored session
whose cloud bridge has not reconnected yet, so the cloud broker drops them (the same Mosquitto
behaviour: seen for a session that was connected when the broker stopped; one that had disconnected
cleanly got its queue). The test makes that order certain: the cloud bridge is stalled (SIGSTOP)
while the cloud broker stops and restarts, and goes on only once the link has forwarded. The echo
must come after that: the agent holds echoes while its uplink's notification says the link is down
and sends them ``alert_echo_s`` after it is back. Before that, the echoes fell due during the outage
and were forwarded with the originals, and the events were lost.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.rig import (
    FAST_DETECTION,
    Sensors,
    Service,
    ShippedBroker,
    agent_config,
    agent_drained,
    bridge_config,
    check_tickets,
    fleet_messages,
    fleet_reference,
    metric,
    raised_events,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PDM_CHAOS_SEED", "20260105"))
DOWN_S = float(os.environ.get("PDM_CHAOS_BROKER_DOWN_S", "10"))
RECONNECT_S = 60.0
"""Longest either service may take to be back after the broker is (the rig's reconnect_max_s is 1 s)."""
ECHO_S = 10.0
"""The agent's ``alert_echo_s`` here: above the rig's bridge reconnect delay, as the default (120 s) is
above the shipped one (60 s)."""


def test_a_broker_outage_loses_no_sample_and_no_ticket_and_adds_none(rig: Rig) -> None:
    messages = fleet_messages(rig.workdir, seed=SEED)
    first = int(len(messages) * 0.4)
    agent_cfg, agent_port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION,
                                         alert_echo_s=ECHO_S)
    bridge_cfg, _ = bridge_config(rig.workdir, rig.broker, rig.keys, rig.desk.url)
    agent, bridge = Service.agent(agent_cfg, rig.workdir).start(), Service.bridge(bridge_cfg, rig.workdir).start()
    agent.wait_ready()
    bridge.wait_ready()
    reference = fleet_reference(SEED)
    assert reference, "the fleet raises no alert: the run proves nothing"
    with Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        sensors.send(messages[:first])
        rig.broker.stop()
        held = metric(agent_port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0.0
        time.sleep(DOWN_S)
        assert agent.alive and bridge.alive, "a service ended while the broker was down"
        rig.broker.start()
        assert wait_until(lambda: metric(agent_port, "pdm_agent_mqtt_connected") == 1.0, RECONNECT_S), \
            agent.log()[-3000:]
        sensors.send(messages[first:], timeout_s=RECONNECT_S)
    _check_run(rig, agent, bridge, agent_port, reference=reference, sent=len(messages))
    assert held < len(messages), "the agent had everything before the outage: nothing waited in its session"
    # Both noticed the outage and came back by themselves (one connection per start otherwise).
    for service in (agent, bridge):
        assert len(re.findall(r"event=mqtt\.connected", service.log())) >= 2, service.log()[-3000:]


def test_a_cloud_broker_restart_behind_the_gateway_link_loses_no_ticket(rig: Rig) -> None:
    cloud = rig.broker
    gateway = ShippedBroker(rig.workdir / "gateway-mosquitto", cloud.ca_dir, bridge_to=cloud).start()
    try:
        messages = fleet_messages(rig.workdir, seed=SEED)
        cut, resume = int(len(messages) * 0.3), int(len(messages) * 0.7)
        agent_cfg, agent_port = agent_config(rig.workdir, gateway, rig.keys, detection=FAST_DETECTION,
                                             alert_echo_s=ECHO_S)
        bridge_cfg, _ = bridge_config(rig.workdir, cloud, rig.keys, rig.desk.url)
        agent, bridge = Service.agent(agent_cfg, rig.workdir).start(), Service.bridge(bridge_cfg, rig.workdir).start()
        agent.wait_ready()
        bridge.wait_ready()
        reference = fleet_reference(SEED)
        assert wait_until(lambda: metric(agent_port, "pdm_agent_uplink_connected") == 1.0, RECONNECT_S), \
            f"the agent never saw its uplink's notification: {gateway.log()[-2000:]}"
        with Sensors(gateway.settings("sensors.oslo-north")) as sensors:
            sensors.send(messages[:cut])
            bridge.pause()
            cloud.stop()
            assert wait_until(lambda: metric(agent_port, "pdm_agent_uplink_connected") == 0.0, RECONNECT_S)
            sensors.send(messages[cut:resume])  # alerts keep coming while the cloud is away
            time.sleep(DOWN_S)
            cloud.start()
            assert wait_until(lambda: metric(agent_port, "pdm_agent_uplink_connected") == 1.0, RECONNECT_S), \
                gateway.log()[-2000:]
            time.sleep(2.0)  # the link forwards what waited, before the cloud bridge is back
            bridge.resume()
            sensors.send(messages[resume:], timeout_s=RECONNECT_S)
        _check_run(rig, agent, bridge, agent_port, reference=reference, sent=len(messages))
    finally:
        gateway.stop()


def _check_run(rig: Rig, agent: Service, bridge: Service, agent_port: int, *, reference: dict[str, list[int]],
               sent: int) -> None:
    """Every alert of the undisturbed fleet is one ticket with the same history; clean stops."""
    assert wait_until(lambda: agent_drained(agent_port), 120), agent.log()[-3000:]
    wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), reference).ok, RECONNECT_S + ECHO_S)
    report = check_tickets(rig.desk.tickets("webhook"), reference)
    valid = metric(agent_port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0.0
    raised = raised_events(agent.log())
    exit_codes = {"agent": agent.stop(), "bridge": bridge.stop()}

    assert valid >= sent, f"the agent scored {valid:.0f} of {sent} samples"
    assert report.missing == [], (f"alerts without a ticket: {report.missing}; of them the agent raised "
                                  f"{sorted(set(report.missing) & set(raised))}")
    assert report.duplicates == {}, f"duplicate tickets: {report.duplicates}"
    assert report.unexpected == [], f"tickets the fleet without an outage does not raise: {report.unexpected}"
    assert report.wrong_history == {}, f"ticket histories differ from the run without an outage: " \
                                       f"{report.wrong_history}"
    assert exit_codes == {"agent": 0, "bridge": 0}
    assert (agent.tracebacks(), bridge.tracebacks()) == (0, 0)
