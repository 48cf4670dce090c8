"""Every reproduction of issue #16 as a regression test against the real processes.

1. the poison alert (``event_seq`` 2^63) is dead-lettered and the 10 alerts behind it become tickets;
2. a 400-digit integer as a metric value is dead-lettered and the agent carries on;
3. a clock step back leaves the agent running and restartable;
4. telemetry gaps (by night and by day) add no ticket against the same run without them;
5. ``check-config`` names every missing file;
6. a corrupt outbox (agent: 0 bytes; bridge: truncated) is moved aside, what can be read is salvaged
   and the loss counted, never silently lost.
(A full disk and a read-only state directory: test_storage_faults.py; snooze bounds:
tests/security/test_commands*.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pdm_common.contracts import AlertEvent
from tests.bridge.samples import alert
from tests.rig import (
    FAST_DETECTION,
    REPO,
    Sensors,
    Service,
    Watcher,
    agent_config,
    agent_drained,
    bridge_config,
    check_tickets,
    dump_toml,
    expected_histories,
    fleet_messages,
    fleet_reference,
    fleet_run,
    metric,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = 7


def _agent(rig: Rig, **over: Any) -> tuple[Service, int]:
    cfg, port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION, **over)
    agent = Service.agent(cfg, rig.workdir).start()
    agent.wait_ready()
    return agent, port


def _bridge(rig: Rig, desk_url: str | None = None, **over: Any) -> tuple[Service, Path, int]:
    cfg, port = bridge_config(rig.workdir, rig.broker, rig.keys, desk_url or rig.desk.url, **over)
    bridge = Service.bridge(cfg, rig.workdir).start()
    bridge.wait_ready()
    return bridge, cfg, port


def _accepted(port: int) -> float:
    """Alert messages the bridge stored in its outbox (a live counter, unlike the 5-s outbox gauges)."""
    return metric(port, "pdm_bridge_alert_outcomes_total", 'outcome="accepted"') or 0.0


def _cli(module: str, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, "--config", str(cfg), *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def _signed(ev: AlertEvent, rig: Rig) -> bytes:
    return ev.signed(key_id="gw-17", secret=rig.keys.gateway, msg_id=f"p-{ev.asset}-{ev.event_seq}",
                     now_s=1_770_000_000).to_json()


def test_poison_alert_is_dead_lettered_and_the_alerts_behind_it_become_tickets(rig: Rig) -> None:
    bridge, cfg, port = _bridge(rig)
    events = [alert(1, alert_id=f"hp-{i:04d}:2026-01-14T03:10:00Z:refrigerant_leak") for i in range(14)]
    payloads = [_signed(ev, rig) for ev in events]
    poison = json.loads(payloads[3])
    poison["event_seq"] = 9_223_372_036_854_775_808  # 2^63: valid JSON, overflowed SQLite and PostgreSQL
    payloads[3] = json.dumps(poison).encode()
    with Sensors(rig.broker.settings("oslo-north")) as gateway:
        gateway.send([(f"pdm/v1/{ev.site}/{ev.asset}/alert", p) for ev, p in zip(events, payloads, strict=True)])
    good = {ev.alert_id: [1] for i, ev in enumerate(events) if i != 3}
    assert wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), good).ok, 30), \
        check_tickets(rig.desk.tickets("webhook"), good)
    assert metric(port, "pdm_bridge_alerts_refused_total", 'reason="invalid_field"') == 1.0
    assert bridge.stop() == 0 and bridge.tracebacks() == 0
    # Kept with its reason where an operator looks (cloud-bridge outbox list --refused), not only logged.
    listed = _cli("cloud_bridge.cli", cfg, "outbox", "list", "--refused")
    refused = [line for line in listed.stdout.splitlines() if "hp-0003" in line]
    assert len(refused) == 1 and "invalid_field" in refused[0], listed.stdout + listed.stderr
    # After a restart nothing blocks either: an alert sent now becomes its ticket.
    bridge.start().wait_ready()
    late = alert(1, alert_id="hp-0099:2026-01-14T03:10:00Z:refrigerant_leak")
    with Sensors(rig.broker.settings("oslo-north")) as gateway:
        gateway.send([(f"pdm/v1/{late.site}/{late.asset}/alert", _signed(late, rig))])
    good[late.alert_id] = [1]
    assert wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), good).ok, 30), \
        check_tickets(rig.desk.tickets("webhook"), good)
    assert bridge.stop() == 0


def test_a_400_digit_metric_is_dead_lettered_and_the_agent_carries_on(rig: Rig) -> None:
    agent, port = _agent(rig)
    messages = fleet_messages(rig.workdir, seed=SEED, days=1.0)[:400]
    poison = json.loads(messages[10][1])
    poison["metrics"][next(iter(poison["metrics"]))] = int("9" * 400)
    with Watcher(rig.broker.settings("svc.ops"), "pdm/v1/+/+/deadletter") as watcher, \
            Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        sensors.send([*messages[:10], (messages[10][0], json.dumps(poison).encode()), *messages[11:]])
        assert wait_until(lambda: agent_drained(port), 60)
        assert wait_until(lambda: len(watcher.dead_letters()) == 1, 10)
        letter = watcher.dead_letters()[0]
    assert letter["reason"] == "invalid_field" and "magnitude" in letter["detail"]
    assert metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') == len(messages) - 1
    assert agent.alive and agent.stop() == 0
    assert agent.tracebacks() == 0


def test_clock_step_back_leaves_the_agent_running_and_restartable(rig: Rig) -> None:
    agent, port = _agent(rig)
    messages = fleet_messages(rig.workdir, seed=SEED, days=1.0)
    later = fleet_messages(rig.workdir, seed=SEED + 1, days=0.25)  # an older stretch for the same assets
    stepped = [(topic, _shift(payload, -3 * 86_400_000)) for topic, payload in later]
    with Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        sensors.send(messages)
        assert wait_until(lambda: agent_drained(port), 60)
        sensors.send(stepped)  # NTP corrects the PLCs' clocks three days back
        assert wait_until(lambda: not agent.alive or agent_drained(port), 60)
        assert agent.alive, agent.log()[-3000:]
        assert agent.stop() == 0
        for _ in range(3):
            agent.start().wait_ready()
            sensors.send(stepped[:50])
            assert wait_until(lambda: agent_drained(port), 60)
            assert agent.alive and agent.stop() == 0
    assert agent.tracebacks() == 0


def per_asset(histories: dict[str, list[int]]) -> Counter[str]:
    """Alerts (tickets) per asset."""
    return Counter(alert_id.split(":")[1] for alert_id in histories)


def _shift(payload: bytes, ms: int) -> bytes:
    body = json.loads(payload)
    body["ts"] += ms
    return json.dumps(body).encode()


def _gap(messages: list[tuple[str, bytes]], start_ms: int, minutes: int) -> list[tuple[str, bytes]]:
    end = start_ms + minutes * 60_000
    return [(t, p) for t, p in messages if not start_ms <= json.loads(p)["ts"] < end]


def test_gaps_by_night_and_by_day_add_no_ticket(rig: Rig) -> None:
    messages = fleet_messages(rig.workdir, seed=20260105)
    day0 = json.loads(messages[0][1])["ts"]
    night, day = day0 + int(2.1 * 86_400_000), day0 + int(3.5 * 86_400_000)  # 02:24 and 12:00 UTC
    gapped = _gap(_gap(messages, night, 40), day, 40)
    agent, port = _agent(rig)
    with Watcher(rig.broker.settings("svc.cloud-bridge"), "pdm/v1/+/+/alert") as watcher, \
            Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        sensors.send(gapped)
        assert wait_until(lambda: agent_drained(port), 60)
        published = expected_histories(watcher.alerts())
    assert agent.stop() == 0
    with_gaps, without = per_asset(published), per_asset(fleet_reference(20260105))
    assert with_gaps == without, f"tickets per asset {dict(with_gaps)} against {dict(without)} without the gaps"


def test_check_config_names_every_missing_file(rig: Rig) -> None:
    cfg, _ = agent_config(rig.workdir, rig.broker, rig.keys)
    missing = {
        "mqtt.password_file": rig.workdir / "nope" / "mqtt.password",
        "mqtt.tls.ca_file": rig.workdir / "nope" / "ca.crt",
        "commands.keys": rig.workdir / "nope" / "commands.key",
        "signing.secret_file": rig.workdir / "nope" / "gateway.key",
    }
    text = cfg.read_text()
    for path_field, path in missing.items():
        original = {
            "mqtt.password_file": str(rig.broker.password_file("oslo-north")),
            "mqtt.tls.ca_file": str(rig.broker.workdir / "ca.crt"),
            "commands.keys": str(rig.keys.file("commands")),
            "signing.secret_file": str(rig.keys.file("gateway")),
        }[path_field]
        text = text.replace(json.dumps(original), json.dumps(str(path)))
    broken = rig.workdir / "broken-files.toml"
    broken.write_text(text)
    done = _cli("edge_agent.cli", broken, "check-config")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for path in missing.values():
        assert str(path) in done.stderr, f"{path} not named:\n{done.stderr}"
    run = _cli("edge_agent.cli", broken, "run")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]


def _agent_outbox_rows(path: Path, n: int) -> None:
    """``n`` alert events in an agent outbox at ``path``, left as a ``kill -9`` leaves them (WAL not merged)."""
    from edge_agent.outbox import AlertRef, Outbox, OutboxEntry

    box = Outbox(path, max_rows=10_000)
    box.put_many(OutboxEntry(topic=f"pdm/v1/oslo-north/hp-{i:04d}/alert", payload=b"{}", qos=1, retain=False,
                             kind="opened", alert=AlertRef(f"oslo-north:hp-{i:04d}:x:leak", "oslo-north",
                                                           f"hp-{i:04d}", 1))
                 for i in range(n))
    shutil.copy(path, f"{path}.crash")
    shutil.copy(f"{path}-wal", f"{path}.crash-wal")
    box.close()
    Path(f"{path}.crash").replace(path)
    Path(f"{path}.crash-wal").replace(f"{path}-wal")


def test_a_zero_byte_agent_outbox_is_moved_aside_and_the_loss_logged(rig: Rig) -> None:
    # Issue #16.3: a 0-byte agent outbox (an SD card after a power cut) silently lost 200 rows.
    state = rig.workdir / "agent-state"
    state.mkdir()
    _agent_outbox_rows(state / "outbox.sqlite3", 200)
    Path(f"{state / 'outbox.sqlite3'}-wal").unlink()
    (state / "outbox.sqlite3").write_bytes(b"")
    agent, _port = _agent(rig)
    assert agent.stop() == 0
    aside = [p.name for p in state.iterdir() if p.name.startswith("outbox.sqlite3.corrupt-")]
    assert aside, sorted(p.name for p in state.iterdir())
    corrupt = [line for line in agent.log().splitlines() if "event=outbox.corrupt" in line]
    assert len(corrupt) == 1 and "lost=" in corrupt[0] and aside[0] in corrupt[0], agent.log()[-2000:]
    assert agent.tracebacks() == 0


def test_a_zero_byte_agent_outbox_with_its_wal_is_moved_aside(tmp_path: Path) -> None:
    # In process: the file logic of edge_agent/outbox.py, which the agent above runs at start.
    from edge_agent.outbox import Outbox

    path = tmp_path / "outbox.sqlite3"
    _agent_outbox_rows(path, 200)
    path.write_bytes(b"")  # the main file lost its pages; the WAL of the crash is still there
    box = Outbox(path, max_rows=10_000)
    try:
        aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        assert (aside and box.salvaged + len(box.pending(1000)) == 0) or box.salvaged == 200, aside
    finally:
        box.close()


def test_a_truncated_bridge_outbox_is_moved_aside_salvaged_and_the_loss_counted(rig: Rig) -> None:
    # No desk: the deliveries stay queued. The failed attempts open the desk's circuit, and the events
    # wait for it after the restart too: 0.5 s instead of the default 30 s keeps the test short.
    bridge, cfg, port = _bridge(rig, "http://127.0.0.1:9", retry={"base_s": 0.05, "cap_s": 0.5, "circuit_open_s": 0.5})
    events = [alert(1, alert_id=f"hp-{i:04d}:2026-01-14T03:10:00Z:refrigerant_leak") for i in range(30)]
    with Sensors(rig.broker.settings("oslo-north")) as gateway:
        gateway.send([(f"pdm/v1/{ev.site}/{ev.asset}/alert", _signed(ev, rig)) for ev in events])
    assert wait_until(lambda: _accepted(port) == 30.0, 30)
    assert bridge.stop() == 0
    db = rig.workdir / "bridge-outbox.db"
    size = db.stat().st_size
    db.write_bytes(db.read_bytes()[: size - 4096])  # the last page torn off (a power cut mid-write)
    cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9", rig.desk.url))
    bridge.start()
    bridge.wait_ready()
    corrupt = [line for line in bridge.log().splitlines() if "event=outbox.corrupt" in line]
    assert len(corrupt) == 1, bridge.log()[-3000:]
    assert any(p.name.startswith("bridge-outbox.db.corrupt-") for p in rig.workdir.iterdir())
    salvaged = metric(port, "pdm_bridge_outbox_salvaged_rows_total", 'table="events"') or 0.0
    lost = metric(port, "pdm_bridge_outbox_lost_rows_total") or 0.0
    assert salvaged > 0, corrupt[0]
    # Every queued delivery is either salvaged (and delivered) or counted as lost: none vanishes.
    assert salvaged + lost >= 30, corrupt[0]
    assert wait_until(lambda: len(rig.desk.tickets("webhook")) == salvaged, 30), rig.desk.tickets("webhook")
    report = check_tickets(rig.desk.tickets("webhook"), {t["dedup_key"]: [1] for t in rig.desk.tickets("webhook")})
    assert report.ok, report
    assert bridge.stop() == 0 and bridge.tracebacks() == 0


def test_config_files_are_toml_the_services_accept(rig: Rig) -> None:
    # The rig's own writer: what every test above relies on.
    cfg, _ = agent_config(rig.workdir, rig.broker, rig.keys)
    assert "[commands.keys]" in cfg.read_text() and dump_toml({"a": {"b c": 1}}) == '[a]\n"b c" = 1\n'


def test_the_alerts_do_not_depend_on_when_the_agent_ticks() -> None:
    # In process and deterministic: the same fleet fed in seeded batches of 1-1,000 samples with a
    # tick after each (the agent's main loop under load), against the reference's steady ticks.
    import random
    from datetime import UTC, datetime

    from edge_agent.detection.settings import DetectionSettings
    from edge_agent.engine import DetectionEngine
    from pdm_common.contracts import Telemetry
    from pdm_common.topics import Topics

    rng = random.Random(0)
    messages = fleet_run(20260105)
    engine = DetectionEngine(DetectionSettings.model_validate(FAST_DETECTION), gateway="gw-17", agent_version="x")
    topics, events, i = Topics("pdm/v1"), [], 0
    latest = datetime.min.replace(tzinfo=UTC)
    while i < len(messages):
        batch = messages[i:i + rng.randint(1, 1000)]
        i += len(batch)
        for topic, payload in batch:
            where = topics.parse(topic)
            tel = Telemetry.from_wire(where.site, where.asset, payload)
            latest = max(latest, tel.ts)
            events += [e for e in engine.process(tel, tel.ts) if isinstance(e, AlertEvent)]
        events += [e for e in engine.tick(latest) if isinstance(e, AlertEvent)]
    assert expected_histories(events) == fleet_reference(20260105)
