"""Command-line and configuration conventions of both services (issue 12 item 4, issue 16 item 6).

``--config`` before or after the sub-command; the system path by default; exit 2 for configuration
errors and 64 for usage errors; ``check-config`` names every file ``run`` would miss; ``run`` ends
with the message, never a traceback; one ``PDM_LOG__LEVEL`` for both services; logfmt lines with
their journald priority; the bridge doctor contacts each desk and says what it found.
"""

from __future__ import annotations

import io
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.cli import main as bridge_main
from cloud_bridge.config import BridgeSettings, DeskSettings
from cloud_bridge.doctor import describe_postgres_error, probe_desk
from edge_agent.cli import main as agent_main
from pdm_common.doctor import Status
from pdm_common.logs import configure_logging, get_logger, stream_is_journal
from pdm_common.settings import load_settings
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import desk_settings
from tests.deploy.conftest import REPO

AGENT_EXAMPLE = REPO / "config" / "edge-agent.example.toml"
BRIDGE_EXAMPLE = REPO / "config" / "cloud-bridge.example.toml"


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDM_CONFIG", raising=False)


def _agent_config(tmp_path: Path, **files: Path) -> Path:
    """The shipped example with its state directory and any files moved into ``tmp_path``."""
    text = AGENT_EXAMPLE.read_text().replace('state_dir = "/var/lib/pdm-edge-agent"',
                                               f'state_dir = "{tmp_path / "state"}"')
    for old, new in files.items():
        text = text.replace(old.replace("__", "/"), str(new))
    path = tmp_path / "edge-agent.toml"
    path.write_text(text)
    return path


def test_config_option_before_or_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "a.toml"
    config.write_text('gateway = "gw-1"\nsite = "s-1"\n' f'state_dir = "{tmp_path}"\n')
    assert agent_main(["--config", str(config), "check-config"]) == 0
    assert agent_main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("configuration OK") == 2 and "from --config" in out


def test_usage_errors_exit_64_and_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for main in (agent_main, bridge_main):
        with pytest.raises(SystemExit) as unknown:
            main(["no-such-command"])
        assert unknown.value.code == 64
        with pytest.raises(SystemExit) as bad_option:
            main(["check-config", "--no-such-option"])
        assert bad_option.value.code == 64
    assert agent_main(["check-config", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml does not exist" in capsys.readouterr().err


def test_default_config_path_is_the_system_one(capsys: pytest.CaptureFixture[str]) -> None:
    if Path("/etc/pdm-edge/edge-agent.toml").exists():
        pytest.skip("this machine has a real /etc/pdm-edge/edge-agent.toml")
    assert agent_main(["check-config"]) == 2
    assert "/etc/pdm-edge/edge-agent.toml does not exist" in capsys.readouterr().err


def test_agent_check_config_names_every_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _agent_config(tmp_path)  # the example points at /run/credentials/… and /etc/pdm-edge/ca.crt
    assert agent_main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.password_file = '/run/credentials/pdm-edge-agent.service/secret_mqtt-password': does not exist" in err
    assert "mqtt.tls.ca_file = '/etc/pdm-edge/ca.crt': does not exist" in err
    assert err.count("Fix:") >= 2


def test_unparsable_ca_and_a_state_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    password = tmp_path / "pw"
    password.write_text("secret")
    config = _agent_config(tmp_path, **{"__etc__pdm-edge__ca.crt": ca,
                                        "__run__credentials__pdm-edge-agent.service__secret_mqtt-password": password})
    (tmp_path / "state").write_text("a file where the state directory should be")
    assert agent_main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.tls.ca_file" in err and "is not a PEM CA bundle" in err
    assert "state_dir" in err and "exists and is not a directory" in err
    assert "password_file" not in err


def test_agent_run_exits_2_with_the_message_not_a_traceback(tmp_path: Path) -> None:
    config = _agent_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "ca_file" in result.stderr


_GATEWAY = '[gateways.gw-17]\nsite = "oslo-north"\nsecret_file = "{key}"\n'


def _bridge_config(tmp_path: Path, ca: Path) -> Path:
    """A bridge config whose every file exists except the MQTT CA file ``ca``; gateway gw-17 signs alerts."""
    secret = tmp_path / "token"
    secret.write_text("t0ken")
    (tmp_path / "gw-17.key").write_text("whsec_" + "A" * 44)
    text = (f'registry_path = "{REPO / "config/assets.example.toml"}"\n'
            f'fault_actions_path = "{REPO / "config/fault-actions.toml"}"\n'
            f'{_GATEWAY.format(key=tmp_path / "gw-17.key")}'
            f'[mqtt]\nhost = "127.0.0.1"\nport = 8883\n[mqtt.tls]\nenabled = true\nca_file = "{ca}"\n'
            f'[desks.main]\nkind = "zendesk"\nbase_url = "https://acme.zendesk.com"\n'
            f'username = "a@b/token"\ntoken_file = "{secret}"\n'
            f'[outbox]\npath = "{tmp_path / "outbox.db"}"\n[metrics]\nenabled = false\n')
    path = tmp_path / "cloud-bridge.toml"
    path.write_text(text)
    return path


def test_bridge_run_with_a_missing_ca_exits_2_without_traceback(tmp_path: Path) -> None:
    config = _bridge_config(tmp_path, tmp_path / "missing-ca.pem")
    result = subprocess.run([sys.executable, "-m", "cloud_bridge.cli", "--config", str(config), "run"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "mqtt.tls.ca_file" in result.stderr and "missing-ca.pem': does not exist" in result.stderr


def test_bridge_check_config_names_every_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert bridge_main(["check-config", "--config", str(BRIDGE_EXAMPLE)]) == 2
    err = capsys.readouterr().err
    for field in ("registry_path", "fault_actions_path", "mqtt.password_file", "mqtt.tls.ca_file",
                  "desks.main.token_file", "desks.oncall.token_file", "desks.partner.hmac_secret_file"):
        assert f"  - {field} = " in err, field


def test_bridge_check_config_catches_signed_alerts_without_gateways_before_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed: TLS is off below")
    config = _bridge_config(tmp_path, ca)
    text = config.read_text().replace("enabled = true\n", "enabled = false\n")
    gateway = _GATEWAY.format(key=tmp_path / "gw-17.key")
    config.write_text(text.replace(gateway, ""))
    assert bridge_main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "  - require_signed_alerts: is true but no [gateways.<gateway>] table" in err
    assert "Fix: add one per gateway with site and secret_file" in err
    # A listed gateway whose key file is missing is named with its field and the fix.
    config.write_text(text)
    (tmp_path / "gw-17.key").unlink()
    assert bridge_main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    key = tmp_path / "gw-17.key"
    assert f"  - gateways.gw-17.secret_file = '{key}': does not exist. Fix: create {key}" in err
    assert "require_signed_alerts" not in err
    key.write_text("whsec_" + "A" * 44)
    assert bridge_main(["check-config", "--config", str(config)]) == 0, capsys.readouterr().err


def test_one_env_naming_for_both_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PDM_LOG__LEVEL", "debug")
    monkeypatch.setenv("PDM_LOG__FORMAT", "json")
    bridge = load_settings(BridgeSettings, None, desks={"d": {"kind": "webhook", "base_url": "http://x"}},
                           routing={"default": "d"})
    config = _agent_config(tmp_path)
    from edge_agent.config import AgentSettings

    agent = load_settings(AgentSettings, config)
    assert (bridge.log.level, bridge.log.format) == (agent.log.level, agent.log.format) == ("debug", "json")


def test_logfmt_lines_carry_their_journald_priority() -> None:
    out = io.StringIO()
    configure_logging(level="debug", fmt="kv", stream=out, journal=True)
    log = get_logger("test")
    log.warning("broker.unreachable", host="b 1", password="hunter2", action="start the broker")
    log.error("outbox.failed")
    log.debug("noise")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("<4>ts=") and 'host="b 1"' in lines[0] and "password=<redacted>" in lines[0]
    assert "level=warning event=broker.unreachable" in lines[0] and 'action="start the broker"' in lines[0]
    assert lines[1].startswith("<3>") and lines[2].startswith("<7>")
    plain = io.StringIO()
    configure_logging(level="info", fmt="kv", stream=plain, journal=False)
    get_logger("test").info("plain")
    assert plain.getvalue().startswith("ts=")
    configure_logging(level="info", stream=sys.stderr)


def test_journal_stream_detection(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert stream_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not stream_is_journal(stream, {})


@pytest.fixture(scope="module")
def desk_sim() -> Iterator[DeskSimulator]:
    """A real desk simulator."""
    with DeskSimulator(port=0, seed=3) as sim:
        yield sim


@pytest.mark.parametrize("kind", ["zendesk", "servicenow", "jsm"])
def test_doctor_reads_from_each_desk_with_its_credentials(kind: str, desk_sim: DeskSimulator) -> None:
    good = probe_desk("d", DeskSettings.model_validate(desk_settings(kind, desk_sim.url)), timeout_s=5.0)
    assert good.status is Status.OK and good.detail, good
    bad = probe_desk("d", DeskSettings.model_validate(desk_settings(kind, desk_sim.url, token="wrong")), timeout_s=5.0)
    assert bad.status is Status.FAIL and "refused the credentials" in bad.detail, bad


def test_doctor_reports_an_untrusted_desk_certificate_as_configuration(test_ca: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(test_ca / "server.crt", test_ca / "server.key")
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            server.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass  # the client refuses our certificate: that is the point
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        desk = DeskSettings.model_validate(desk_settings("zendesk", f"https://localhost:{port}"))
        result = probe_desk("zd", desk, timeout_s=5.0)
    finally:
        thread.join(10)
        listener.close()
    assert result.status is Status.FAIL and "configuration" in result.fix, result


@pytest.mark.parametrize(("message", "part", "named"), [
    ('connection failed: connection to server at "127.0.0.1", port 5433 failed: Connection refused', "host",
     "127.0.0.1:5433"),
    ('connection failed: ... FATAL:  password authentication failed for user "bridge"', "auth", "user bridge"),
    ('connection failed: ... FATAL:  database "pdm" does not exist', "database", "database pdm"),
])
def test_postgres_failures_name_what_failed(message: str, part: str, named: str) -> None:
    problem = describe_postgres_error(message, "postgresql://bridge:pw@127.0.0.1:5433/pdm")
    assert problem.part == part and named in problem.detail and "pw" not in problem.detail.replace("password", "")


@pytest.mark.postgres
def test_bridge_run_names_a_missing_postgres_database(tmp_path: Path) -> None:
    from cloud_bridge.doctor import probe_postgres

    if probe_postgres("postgresql://postgres@127.0.0.1:5432/postgres", timeout_s=3.0) is not None:
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    config = _bridge_config(tmp_path, REPO / "config" / "fault-actions.toml")  # any readable file; TLS off below
    text = config.read_text().replace("enabled = true\n", "enabled = false\n")
    text = text.replace(f'[outbox]\npath = "{tmp_path / "outbox.db"}"\n', '[outbox]\nbackend = "postgres"\n'
                        'dsn = "postgresql://postgres@127.0.0.1:5432/pdm_no_such_db_ops"\n')
    config.write_text(text)
    result = subprocess.run([sys.executable, "-m", "cloud_bridge.cli", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "database pdm_no_such_db_ops does not exist" in result.stderr and "Traceback" not in result.stderr
    assert "OperationalError" not in result.stderr
