"""Fixtures of the deployment tests: a test CA (config/mosquitto/make-test-ca.sh) and a Mosquitto
started from the shipped config/mosquitto files, with TLS, a password file and the example ACL."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pdm_common.mqtt import MqttSettings, TlsSettings
from simulators.broker import free_port

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = REPO / "config" / "mosquitto"
PASSWORDS = {"gw-17": "gw17-pass", "gw-18": "gw18-pass", "cloud-bridge": "bridge-pass"}
_START_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for localhost/127.0.0.1 and a client certificate (CN gw-17)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: needed to make test certificates")
    out = tmp_path_factory.mktemp("ca")
    subprocess.run(["sh", str(MOSQUITTO_DIR / "make-test-ca.sh"), str(out), "localhost", "gw-17"],
                   check=True, capture_output=True, timeout=60)
    return out


@dataclass(frozen=True)
class SecureBroker:
    """The shipped Mosquitto config running on a free port."""

    port: int
    ca_file: Path
    state: Path

    def settings(self, user: str, password: str | None = None, **overrides: object) -> MqttSettings:
        """Settings of ``user`` logging in over TLS with host-name verification."""
        secret = self.state / f"{user}.password"
        secret.write_text(password if password is not None else PASSWORDS[user])
        secret.chmod(0o600)
        base: dict[str, object] = {
            "host": "localhost", "port": self.port, "username": user, "password_file": secret,
            "tls": TlsSettings(enabled=True, ca_file=self.ca_file), "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
        }
        base.update(overrides)
        return MqttSettings.model_validate(base)


def _wait_tcp(port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def secure_broker(test_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """Mosquitto from config/mosquitto/pdm-edge.conf + acl.example, paths and port moved to a temp dir."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    passwd_tool = shutil.which("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed for the TLS/ACL broker tests")
    etc = tmp_path_factory.mktemp("mosquitto")
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(test_ca / name, etc / name)
    shutil.copy(MOSQUITTO_DIR / "acl.example", etc / "acl")
    passwd = etc / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True, capture_output=True, timeout=30)
    port = free_port("127.0.0.1")
    conf = (MOSQUITTO_DIR / "pdm-edge.conf").read_text()
    conf = conf.replace("/etc/mosquitto/pdm/", f"{etc}/").replace("listener 8883", f"listener {port} 127.0.0.1")
    conf = conf.replace("persistence_location /var/lib/mosquitto/", f"persistence_location {etc}/")
    (etc / "mosquitto.conf").write_text(conf + "log_dest stderr\nuser root\n")
    log = (etc / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(etc / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        if not _wait_tcp(port):
            pytest.fail(f"mosquitto did not start: {(etc / 'mosquitto.log').read_text()[-2000:]}")
        yield SecureBroker(port=port, ca_file=etc / "ca.crt", state=etc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
