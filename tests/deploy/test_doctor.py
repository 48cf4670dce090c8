"""doctor finds each misconfiguration and says what to fix; health summary for GatewayStatus."""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from cloud_bridge.config import BridgeSettings, DeskKind, DeskSettings, OutboxSettings
from cloud_bridge.doctor import bridge_checks
from edge_agent.config import AgentSettings
from edge_agent.doctor import add_parser, agent_checks, check_checkpoints, health
from pdm_common.contracts import GatewayStatus
from pdm_common.doctor import (
    CheckResult,
    Status,
    check_certificates,
    check_clock,
    check_disk,
    credential_sources,
    exit_code,
    health_summary,
    render,
    resolve_credential,
    run_checks,
)
from pdm_common.mqtt import MqttSettings, TlsSettings
from simulators.broker import free_port
from tests.deploy.conftest import REPO, SecureBroker

NOW = datetime.now(UTC) + timedelta(hours=2)
"""A moment after every certificate the session's fixtures make (valid from their creation, which can be
many minutes after this module is imported in a full run), and long before any of them expires."""


def _agent(tmp_path: Path, mqtt: MqttSettings) -> AgentSettings:
    return AgentSettings(gateway="gw-17", site="oslo-north", mqtt=mqtt, state_dir=tmp_path / "state")


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _doctor(settings: AgentSettings, *, network: bool = True, now: datetime = NOW) -> dict[str, CheckResult]:
    return _by_name(run_checks(agent_checks(settings, now=now, network=network, timeout_s=3.0,
                                            root=Path("/nonexistent"))))


@pytest.mark.mosquitto
def test_healthy_gateway_passes(tmp_path: Path, secure_broker: SecureBroker) -> None:
    results = _doctor(_agent(tmp_path, secure_broker.settings("oslo-north")))
    assert {n: r.status for n, r in results.items() if r.status is Status.FAIL} == {}
    assert results["broker.login"].status is Status.OK
    assert results["broker.tls"].status is Status.OK


@pytest.mark.mosquitto
def test_wrong_password_fails_login(tmp_path: Path, secure_broker: SecureBroker) -> None:
    results = _doctor(_agent(tmp_path, secure_broker.settings("oslo-north", "not-the-password")))
    assert results["broker.login"].status is Status.FAIL
    assert "refused user oslo-north" in results["broker.login"].detail
    assert "password" in results["broker.login"].fix


@pytest.mark.mosquitto
def test_broker_certificate_from_another_ca_fails_tls(tmp_path: Path, secure_broker: SecureBroker,
                                                       test_ca: Path) -> None:
    other = tmp_path / "other-ca"
    subprocess.run(["sh", str(REPO / "config/mosquitto/make-test-ca.sh"), str(other)], check=True,
                   capture_output=True, timeout=60)
    mqtt = secure_broker.settings("oslo-north", tls=TlsSettings(enabled=True, ca_file=other / "ca.crt"))
    results = _doctor(_agent(tmp_path, mqtt))
    assert results["broker.tls"].status is Status.FAIL
    assert "certificate verify failed" in results["broker.tls"].detail


def test_unreachable_broker_fails(tmp_path: Path) -> None:
    mqtt = MqttSettings(host="127.0.0.1", port=free_port("127.0.0.1"))
    results = _doctor(_agent(tmp_path, mqtt))
    assert results["broker.reach"].status is Status.FAIL
    assert "start the broker" in results["broker.reach"].fix


def test_missing_and_loose_password_credential(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    mqtt = MqttSettings(username="gw-17", password_file=secret)
    assert _doctor(_agent(tmp_path, mqtt), network=False)["credentials.mqtt"].status is Status.FAIL
    secret.write_text("pw")
    secret.chmod(0o644)
    loose = _doctor(_agent(tmp_path, mqtt), network=False)["credentials.mqtt"]
    assert loose.status is Status.WARN and "chmod 600" in loose.fix


def test_certificate_expiry_and_key_mismatch(test_ca: Path) -> None:
    not_after = _not_after(test_ca / "client.crt")
    good = TlsSettings(enabled=True, ca_file=test_ca / "ca.crt", cert_file=test_ca / "client.crt",
                       key_file=test_ca / "client.key")
    assert {r.name: r.status for r in check_certificates(good, NOW)} == {
        "tls.ca": Status.OK, "tls.cert": Status.OK, "tls.key": Status.OK}
    soon = _by_name(check_certificates(good, not_after - timedelta(days=10)))
    assert soon["tls.cert"].status is Status.WARN and "expires in" in soon["tls.cert"].detail
    expired = _by_name(check_certificates(good, not_after + timedelta(days=1)))
    assert expired["tls.cert"].status is Status.FAIL and "expired" in expired["tls.cert"].detail
    assert "tls.key" not in expired, "no key check against a dead certificate"
    before = _by_name(check_certificates(good, NOW - timedelta(days=400)))
    assert before["tls.ca"].status is Status.FAIL and "clock" in before["tls.ca"].fix
    mismatch = good.model_copy(update={"key_file": test_ca / "server.key"})
    assert _by_name(check_certificates(mismatch, NOW))["tls.key"].status is Status.FAIL
    missing = good.model_copy(update={"ca_file": test_ca / "nope.crt"})
    assert _by_name(check_certificates(missing, NOW))["tls.ca"].status is Status.FAIL


def _not_after(path: Path) -> datetime:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def test_certificate_dates_agree_with_openssl(test_ca: Path) -> None:
    out = subprocess.run(["openssl", "x509", "-in", str(test_ca / "server.crt"), "-noout", "-enddate"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    expected = datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    tls = TlsSettings(enabled=True, ca_file=test_ca / "server.crt")
    (ca,) = [r for r in check_certificates(tls, NOW) if r.name == "tls.ca"]
    assert f"valid until {expected:%Y-%m-%d}" in ca.detail


def test_malformed_certificate_is_a_failure_with_a_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", encoding="ascii")
    (ca,) = [r for r in check_certificates(TlsSettings(enabled=True, ca_file=bad), NOW) if r.name == "tls.ca"]
    assert ca.status is Status.FAIL and ca.fix


def test_clock_behind_state_fails(tmp_path: Path) -> None:
    settings = _agent(tmp_path, MqttSettings())
    settings.state_dir.mkdir()
    (settings.state_dir / "outbox.sqlite3").touch()
    results = _doctor(settings, network=False, now=NOW - timedelta(days=3))
    assert results["clock"].status is Status.FAIL
    assert "NTP" in results["clock"].fix
    assert check_clock(NOW, not_before=NOW - timedelta(days=1), synchronized=False).status is Status.WARN
    assert check_clock(NOW, not_before=NOW - timedelta(days=1), synchronized=True).status is Status.OK


def test_disk_thresholds(tmp_path: Path) -> None:
    assert check_disk(tmp_path, free_bytes=10 * 2**20).status is Status.FAIL
    assert check_disk(tmp_path, free_bytes=200 * 2**20).status is Status.WARN
    assert check_disk(tmp_path, free_bytes=5 * 2**30).status is Status.OK


def test_corrupt_outbox_fails(tmp_path: Path) -> None:
    settings = _agent(tmp_path, MqttSettings())
    settings.state_dir.mkdir()
    db = settings.state_dir / "outbox.sqlite3"
    assert _doctor(settings, network=False)["outbox"].status is Status.OK
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 50)
    conn.close()
    assert _doctor(settings, network=False)["outbox"].status is Status.OK
    raw = bytearray(db.read_bytes())
    raw[4096:8192] = b"\xff" * 4096  # overwrite the table's first page
    db.write_bytes(bytes(raw))
    broken = _doctor(settings, network=False)["outbox"]
    assert broken.status is Status.FAIL and "move" in broken.fix


def test_checkpoints(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    assert check_checkpoints(ckpt).status is Status.OK
    ckpt.mkdir()
    (ckpt / "hp-1.ckpt").write_bytes(b"model")
    assert check_checkpoints(ckpt).status is Status.OK
    (ckpt / "hp-2.ckpt.tmp").write_bytes(b"half")
    assert check_checkpoints(ckpt).status is Status.WARN
    (ckpt / "hp-3.ckpt").write_bytes(b"")
    assert check_checkpoints(ckpt).status is Status.FAIL


def test_bad_config_file_fails_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge-agent.toml"
    config.write_text('gateway = "no spaces allowed"\n')
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(config), "doctor", "--offline"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "[FAIL] config" in out and "gateway" in out


def test_health_summary_fits_gateway_status(tmp_path: Path) -> None:
    summary = health(_agent(tmp_path, MqttSettings()), now=NOW)
    assert set(summary) >= {"tls", "clock", "disk", "checkpoints"}
    assert summary["disk"] == "ok"
    GatewayStatus(status="online", gateway="gw-17", version="0.3.0", health=summary)
    many = [CheckResult(f"c{i}", Status.WARN, "x" * 500) for i in range(50)]
    bounded = health_summary(many)
    assert len(bounded) == 32 and all(len(v) <= 200 for v in bounded.values())


def _crashing_check() -> CheckResult:
    raise ZeroDivisionError("a bug in a check")


def test_report_and_exit_code() -> None:
    results = run_checks([("a", lambda: CheckResult("a", Status.OK, "fine")),
                          ("b", lambda: CheckResult("b", Status.WARN, "meh", "do x")),
                          ("boom", _crashing_check)])
    assert [r.status for r in results] == [Status.OK, Status.WARN, Status.FAIL]
    assert "ZeroDivisionError" in results[2].detail
    text = render(results)
    assert "[WARN] b" in text and "fix: do x" in text and "3 checks: 1 failed, 1 warnings" in text
    assert exit_code(results) == 1 and exit_code(results[:2]) == 0


def test_credentials_resolve_to_unit_sources() -> None:
    unit = (REPO / "systemd/pdm-edge-agent.service").read_text()
    sources = credential_sources(unit)
    assert sources == {"secret": Path("/etc/pdm-edge/credentials/edge-agent")}
    configured = Path("/run/credentials/pdm-edge-agent.service/secret_mqtt-password")
    assert resolve_credential(configured, "pdm-edge-agent.service", sources) == Path(
        "/etc/pdm-edge/credentials/edge-agent/mqtt-password")
    bridge = credential_sources((REPO / "systemd/pdm-cloud-bridge.service").read_text())
    token = Path("/run/credentials/pdm-cloud-bridge.service/secret_zendesk-eu")
    assert resolve_credential(token, "pdm-cloud-bridge.service", bridge) == Path(
        "/etc/pdm-edge/credentials/cloud-bridge/zendesk-eu")


def test_bridge_doctor_finds_desk_and_registry_problems(tmp_path: Path) -> None:
    token = tmp_path / "zd-token"
    settings = BridgeSettings(
        desks={
            "zd": DeskSettings(kind=DeskKind.ZENDESK, base_url="https://acme.zendesk.com", token_file=token),
            "hook": DeskSettings(kind=DeskKind.WEBHOOK, base_url="http://desk.example.com", token="inline"),
        },
        routing={"default": "zd"},
        registry_path=tmp_path / "assets.toml",
        fault_actions_path=REPO / "config/fault-actions.toml",
        outbox=OutboxSettings(path=tmp_path / "outbox.db"),
    )
    results = _by_name(run_checks(bridge_checks(settings, now=NOW, network=False, unit_file=tmp_path / "none")))
    assert results["registry"].status is Status.FAIL
    assert results["fault_actions"].status is Status.OK
    assert results["desk.zd.token"].status is Status.FAIL
    assert results["desk.hook.token"].status is Status.WARN
    assert results["desk.hook.hmac_secret"].status is Status.WARN
    assert results["desk.hook.url"].status is Status.WARN
    assert results["desk.zd.url"].status is Status.OK
    token.write_text("t0ken")
    token.chmod(0o600)
    (tmp_path / "assets.toml").write_text("")
    fixed = _by_name(run_checks(bridge_checks(settings, now=NOW, network=False, unit_file=tmp_path / "none")))
    assert fixed["desk.zd.token"].status is Status.OK
    assert fixed["registry"].status is Status.OK


def test_bridge_doctor_checks_who_may_sign_alerts(tmp_path: Path) -> None:
    desks = {"zd": DeskSettings(kind=DeskKind.ZENDESK, base_url="https://acme.zendesk.com", token="t")}

    def signing(**over: object) -> dict[str, CheckResult]:
        settings = BridgeSettings(desks=desks, routing={"default": "zd"}, outbox=OutboxSettings(
            path=tmp_path / "outbox.db"), **over)  # type: ignore[arg-type]
        checks = [c for c in bridge_checks(settings, now=NOW, network=False, unit_file=tmp_path / "none")
                  if c[0] == "signing"]
        return _by_name(run_checks(checks))

    none = signing()["signing"]
    assert none.status is Status.FAIL and "no [gateways.<gateway>] table" in none.detail
    assert "secret_file" in none.fix
    assert signing(require_signed_alerts=False)["signing"].status is Status.WARN
    key = tmp_path / "gw-17.key"
    listed = signing(gateways={"gw-17": {"site": "oslo-north", "secret_file": key}})
    assert listed["gateway.gw-17.secret"].status is Status.FAIL and str(key) in listed["gateway.gw-17.secret"].detail
    assert listed["signing"].status is Status.OK and "gw-17 -> oslo-north" in listed["signing"].detail
    key.write_text("whsec_" + "A" * 44)
    key.chmod(0o600)
    assert signing(gateways={"gw-17": {"site": "oslo-north", "secret_file": key}})[
        "gateway.gw-17.secret"].status is Status.OK
