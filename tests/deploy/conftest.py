"""Fixtures of the deployment tests: a test CA (config/mosquitto/make-test-ca.sh) and Mosquitto
brokers laid out as docs/deploy.md installs them: Debian's stock ``mosquitto.conf`` (from Debian's
own package, :mod:`tests.deploy.debian`) including ``conf.d/pdm-edge.conf``, the shipped ACL, a
password file, TLS — and, for the gateway, the shipped bridge to a cloud broker.

Only what cannot be the same in a test is changed, by plain text substitution: every absolute
path moves below a temporary root, the listener port is a free one on loopback, the bridge points
at the test's cloud broker, and a test-only ``zz-test.conf`` keeps Mosquitto running as root (the
temporary root is not readable by Debian's ``mosquitto`` user).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdm_common.mqtt import MqttSettings, TlsSettings
from simulators.broker import free_port
from tests.deploy.debian import DebianUnavailable, debian_file
from tests.deploy.package import HOST_ARCH, Root, build

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = REPO / "config" / "mosquitto"
PASSWORDS = {
    "oslo-north": "oslo-pass",        # site account of gateway gw-17
    "bergen-1": "bergen-pass",        # site account of gateway gw-18
    "svc.cloud-bridge": "bridge-pass",
    "svc.ops": "ops-pass",
    "sensors.oslo-north": "sensor-pass",
}
"""Accounts of the test brokers, named as config/mosquitto/acl expects (site accounts, dotted services)."""
_START_TIMEOUT_S = 10.0
_SYSTEM_DIRS = ("/etc/mosquitto/", "/var/lib/mosquitto/", "/run/mosquitto/", "/var/log/mosquitto/")


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for localhost/127.0.0.1 and a client certificate (CN gw-17)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: needed to make test certificates")
    out = tmp_path_factory.mktemp("ca")
    subprocess.run(["sh", str(MOSQUITTO_DIR / "make-test-ca.sh"), str(out), "localhost", "gw-17"],
                   check=True, capture_output=True, timeout=60)
    return out


def mosquitto_accounts(root: Path) -> None:
    """The ``mosquitto`` user and group in ``root``, as ``apt-get install mosquitto`` adds them (from this host)."""
    for table in ("passwd", "group"):
        path = root / "etc" / table
        have = path.read_text() if path.exists() else ""
        host = [line for line in Path(f"/etc/{table}").read_text().splitlines() if line.startswith("mosquitto:")]
        path.write_text(have + "".join(f"{line}\n" for line in host if line not in have.splitlines()))


RAM_DIR = Path("/dev/shm")
_RAM_NEEDED = 2 << 30
"""Bytes free in RAM_DIR to put package roots there: a root is 0.2 GB, a session makes three (clones share)."""
_STALE_S = 6 * 3600.0


@dataclass(frozen=True)
class PackagedGateway:
    """A root with mosquitto's account and the gateway package installed, and clones of it (same file system).

    ``root`` is shared by the session: read it, never write to it (a test that changes a root clones one).
    """

    root: Root
    base: Path

    def clone(self) -> Root:
        """A fresh root in the state ``root`` is in: as if the package had been installed there too."""
        return self.root.clone(Path(tempfile.mkdtemp(dir=self.base)) / "root")


def _roots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAM (/dev/shm) when it has room, else the session's temp dir.

    dpkg creates and deletes thousands of files per install, remove and purge: on the shared CI disk each
    deletion costs milliseconds (a remove took 13 s, on tmpfs well under one). Left-overs of killed
    sessions older than six hours are removed first.
    """
    try:
        usable = RAM_DIR.is_dir() and os.access(RAM_DIR, os.W_OK) and shutil.disk_usage(RAM_DIR).free > _RAM_NEEDED
    except OSError:
        usable = False
    if not usable:
        return tmp_path_factory.mktemp("package-roots")
    for stale in RAM_DIR.glob("pdm-package-roots-*"):
        if time.time() - stale.stat().st_mtime > _STALE_S:
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="pdm-package-roots-", dir=RAM_DIR))


@pytest.fixture(scope="session")
def packaged_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackagedGateway]:
    """The gateway package installed once per session into a root where mosquitto's account exists.

    Tests clone it (:meth:`PackagedGateway.clone`): a clone costs a fraction of an install. The roots
    are deleted at the end of the session.
    """
    if not HOST_ARCH or shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg and dpkg-deb on an amd64 or arm64 host build and install the package")
    if os.geteuid() != 0 or not Path("/usr/bin/python3.11").exists():
        pytest.skip("dpkg --root installs files owned by root and pdm-edge; the package runs on /usr/bin/python3.11")
    deb = build()[HOST_ARCH]
    base = _roots_dir(tmp_path_factory)
    try:
        root = Root.create(base / "installed")
        mosquitto_accounts(root.path)
        result = root.dpkg("-i", str(deb))
        assert result.returncode == 0, result.stdout + result.stderr
        yield PackagedGateway(root, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def stock_mosquitto_conf() -> str:
    """Debian's /etc/mosquitto/mosquitto.conf as the mosquitto package ships it (skips when unavailable)."""
    try:
        return debian_file("mosquitto", "etc/mosquitto/mosquitto.conf").read_text()
    except DebianUnavailable as exc:
        pytest.skip(f"Debian's stock mosquitto.conf is needed: {exc}")


def _wait_tcp(port: int, timeout_s: float = _START_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class SecureBroker:
    """Mosquitto from the shipped files below ``root`` (its /etc, /var, /run), on a free port."""

    root: Path
    port: int
    ca_file: Path
    state: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> str:
        """Mosquitto's log file (the stock config's log_dest, moved below root)."""
        path = self.root / "var/log/mosquitto/mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

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

    def start(self) -> SecureBroker:
        """Start Mosquitto with ``etc/mosquitto/mosquitto.conf`` and wait for its listener."""
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        assert binary is not None
        self._proc = subprocess.Popen([binary, "-c", str(self.root / "etc/mosquitto/mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_tcp(self.port):
            self.stop()
            pytest.fail(f"mosquitto did not start: {self.log[-2000:]}")
        return self

    def stop(self) -> None:
        """SIGTERM and wait: Mosquitto writes its persistence file on the way out."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            finally:
                if self._proc.stderr is not None:
                    self._proc.stderr.close()
            self._proc = None


def _relocate(text: str, root: Path) -> str:
    for directory in _SYSTEM_DIRS:
        text = text.replace(directory, f"{root}{directory}")
    return text


def install_mosquitto(root: Path, test_ca: Path, *, bridge_to: SecureBroker | None = None) -> SecureBroker:
    """Lay out Mosquitto below ``root`` as docs/deploy.md does; with ``bridge_to``, also the cloud bridge.

    Returns the (not yet started) broker.
    """
    if shutil.which("mosquitto") is None and shutil.which("mosquitto", path="/usr/sbin") is None:
        pytest.skip("mosquitto is needed for the TLS/ACL broker tests (apt-get install mosquitto)")
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.skip("mosquitto_passwd is needed (apt-get install mosquitto)")
    etc = root / "etc/mosquitto"
    for sub in ("conf.d", "pdm"):
        (etc / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("var/lib/mosquitto", "run/mosquitto", "var/log/mosquitto"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (etc / "mosquitto.conf").write_text(_relocate(stock_mosquitto_conf(), root))
    port = free_port("127.0.0.1")
    conf = _relocate((MOSQUITTO_DIR / "pdm-edge.conf").read_text(), root)
    (etc / "conf.d/pdm-edge.conf").write_text(conf.replace("listener 8883", f"listener {port} 127.0.0.1"))
    if bridge_to is not None:
        link = _relocate((MOSQUITTO_DIR / "bridge-to-cloud.conf").read_text(), root)
        link = link.replace("address cloud.example.com:8883", f"address 127.0.0.1:{bridge_to.port}")
        link = link.replace("remote_password the-oslo-north-cloud-password",
                            f"remote_password {PASSWORDS['oslo-north']}")
        link = link.replace("restart_timeout 5 60", "restart_timeout 1 2")  # the test waits seconds, not a minute
        (etc / "conf.d/pdm-edge-bridge.conf").write_text(link)
        shutil.copy(test_ca / "ca.crt", etc / "pdm/cloud-ca.crt")
    (etc / "conf.d/zz-test.conf").write_text("user root\n")
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(test_ca / name, etc / "pdm" / name)
    shutil.copy(MOSQUITTO_DIR / "acl", etc / "pdm/acl")
    passwd = etc / "pdm/passwd"
    passwd.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True, capture_output=True, timeout=30)
    state = root / "clients"
    state.mkdir(exist_ok=True)
    return SecureBroker(root=root, port=port, ca_file=etc / "pdm/ca.crt", state=state)


@pytest.fixture(scope="session")
def secure_broker(test_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """Mosquitto on Debian's stock config with the shipped drop-in, ACL, passwords and TLS."""
    broker = install_mosquitto(tmp_path_factory.mktemp("mosquitto"), test_ca).start()
    try:
        yield broker
    finally:
        broker.stop()
