"""docs/deploy.md works as written: every command block is run here, tested by the test it names,
or marked as needing a real machine; the blocks marked ``run`` are executed command by command.

The gateway and the cloud VM are two throwaway roots. Each gets what the page's "hardware" steps
put there: Debian's stock mosquitto.conf (apt-get install mosquitto) and, on the gateway, the
pdm-edge-agent package (dpkg --root, as tests/deploy/test_package.py installs it); on the cloud, the
wheel's share/pdm-edge data. The only changes to the commands are the path prefix (``/etc`` →
``<root>/etc`` …) and the port 8883 → a free one, and ``mosquitto -c`` where the page says
``systemctl restart mosquitto``. At the end an alert published on the gateway's broker arrives on the
cloud's through the bridge the page configured.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulators.broker import free_port
from tests.deploy.conftest import REPO, PackagedGateway, mosquitto_accounts, stock_mosquitto_conf
from tests.deploy.mqtt_probe import ACCEPTED, Probe
from tests.deploy.package import HOST_ARCH, Root

DOC = REPO / "docs" / "deploy.md"
MARKER = re.compile(r"<!-- (run: (?P<where>gateway|cloud)|tested: (?P<test>\S+)|hardware: (?P<why>[^>]+)) -->\n```sh\n"
                    r"(?P<body>.*?)```", re.S)
_PREFIXES = re.compile(r"(?<![\w/.$-])(/etc/|/root/|/usr/share/|/var/|/opt/pdm-edge)")
SECRETS = {"SITE_PASSWORD": "oslo-north-site-pw", "CLOUD_PASSWORD": "oslo-north-site-pw",
           "BRIDGE_PASSWORD": "bridge-pw", "ZENDESK_TOKEN": "zd-token"}
PROMPTED = {"oslo-north": SECRETS["SITE_PASSWORD"], "sensors.oslo-north": "sensor-pw",
            "svc.cloud-bridge": SECRETS["BRIDGE_PASSWORD"]}


@dataclass(frozen=True)
class Block:
    """One ```sh block of the page and how it is checked."""

    where: str | None
    test: str | None
    why: str | None
    body: str
    line: int


def blocks() -> list[Block]:
    """Every marked sh block of docs/deploy.md, in page order."""
    text = DOC.read_text()
    return [Block(m["where"], m["test"], m["why"], m["body"], text[:m.start()].count("\n") + 1)
            for m in MARKER.finditer(text)]


def test_every_command_block_is_run_tested_or_needs_hardware() -> None:
    text = DOC.read_text()
    assert text.count("```sh") == len(blocks()), "a ```sh block without a <!-- run/tested/hardware --> marker"
    for block in blocks():
        if block.test is not None:
            path, _, name = block.test.partition("::")
            assert (REPO / path).is_file() and f"def {name}(" in (REPO / path).read_text(), block.test


def _commands(body: str) -> list[str]:
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _relocate(command: str, root: Path) -> str:
    return _PREFIXES.sub(lambda m: f"{root}{m.group(1)}", command)


def _run(command: str, root: Path, env: dict[str, str], port: int) -> None:
    shell = _relocate(command, root).replace("-p 8883", f"-p {port}")
    user = re.search(r"mosquitto_passwd \S+ (\S+)", command)
    stdin = f"{PROMPTED[user.group(1)]}\n" * 2 if user else ""
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], input=stdin, capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


class _Broker:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen[bytes] | None = None

    def restart(self) -> None:
        """What `systemctl restart mosquitto` does, on the root's /etc/mosquitto/mosquitto.conf."""
        self.stop()
        for conf in (self.root / "etc/mosquitto/conf.d").glob("*.conf"):
            text = conf.read_text().replace("listener 8883\n", f"listener {self.port} 127.0.0.1\n")
            if str(self.root) not in text:  # the paths the files name, below the root like the commands'
                text = re.sub(r"(?<![\w/.-])(/etc/mosquitto/|/var/lib/mosquitto/)", lambda m: f"{self.root}{m[1]}",
                              text)
            conf.write_text(text)
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.root / "etc/mosquitto/mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        log = self.root / "var/log/mosquitto/mosquitto.log"
        pytest.fail(f"mosquitto did not start: {log.read_text()[-1500:] if log.exists() else ''}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _debian_machine(root: Path) -> None:
    """What apt-get install mosquitto leaves: its user and group, the stock config, its directories."""
    (root / "etc/mosquitto/conf.d").mkdir(parents=True, exist_ok=True)
    for sub in ("var/lib/mosquitto", "var/log/mosquitto", "run/mosquitto", "root"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stock = stock_mosquitto_conf()
    for prefix in ("/etc/mosquitto/", "/var/lib/mosquitto/", "/run/mosquitto/", "/var/log/mosquitto/"):
        stock = stock.replace(prefix, f"{root}{prefix}")
    (root / "etc/mosquitto/mosquitto.conf").write_text(stock)
    (root / "etc/mosquitto/conf.d/zz-test.conf").write_text("user root\n")  # the root is not mosquitto's
    mosquitto_accounts(root)


@pytest.fixture
def machines(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Root, Path]]:
    """(gateway root with mosquitto's account and the package installed, cloud VM root)."""
    if shutil.which("mosquitto") is None or not HOST_ARCH or shutil.which("dpkg") is None or os.geteuid() != 0:
        pytest.skip("needs mosquitto, dpkg, root and an amd64/arm64 host")
    if not any(line.startswith("mosquitto:") for line in Path("/etc/group").read_text().splitlines()):
        pytest.skip("needs the mosquitto group of Debian's mosquitto package")
    packaged: PackagedGateway = request.getfixturevalue("packaged_gateway")
    gateway = packaged.clone()
    _debian_machine(gateway.path)
    cloud = tmp_path / "cloud"
    _debian_machine(cloud)
    share = cloud / "usr/share/pdm-edge"  # the wheel's data (deploy.md step 12: ln -s …/share/pdm-edge)
    shutil.copytree(REPO / "systemd", share / "systemd")
    shutil.copytree(REPO / "config", share / "config")
    yield gateway, cloud


@pytest.mark.slow
@pytest.mark.mosquitto
def test_the_page_installs_a_gateway_and_a_cloud_broker_that_carry_an_alert(machines: tuple[Root, Path]) -> None:
    gateway, cloud = machines
    gw_broker, cloud_broker = _Broker(gateway.path, free_port("127.0.0.1")), _Broker(cloud, free_port("127.0.0.1"))
    env = {**os.environ, **SECRETS, "CLOUD_BROKER": f"127.0.0.1:{cloud_broker.port}"}
    page = blocks()
    gateway_blocks = [b for b in page if b.where == "gateway"]
    try:
        _run_block(gateway_blocks[0], gateway.path, env, gw_broker.port)            # 3. the lab CA
        shutil.copytree(gateway.path / "root/pdm-ca", cloud / "root/pdm-ca")        # 11. copied to the cloud VM
        for block in (b for b in page if b.where == "cloud"):                       # 11., 12.
            _run_block(block, cloud, env, cloud_broker.port)
        cloud_broker.restart()
        _run_block(gateway_blocks[1], gateway.path, env, gw_broker.port)            # 4. Mosquitto
        gw_broker.restart()
        _run_block(gateway_blocks[2], gateway.path, env, gw_broker.port)            # 4. check it
        for block in gateway_blocks[3:]:                                            # 5. bridge, 6. agent config
            _run_block(block, gateway.path, env, gw_broker.port)
            gw_broker.restart()
        config = (gateway.path / "etc/pdm-edge/edge-agent.toml").read_text()
        assert 'gateway = "gw-17"' in config and 'username = "oslo-north"' in config
        secret = gateway.path / "etc/pdm-edge/credentials/edge-agent/mqtt-password"
        assert secret.read_text() == SECRETS["SITE_PASSWORD"] and secret.stat().st_mode & 0o077 == 0
        _alert_crosses(gw_broker, cloud_broker, gateway.path / "etc/mosquitto/pdm/ca.crt")
    finally:
        gw_broker.stop()
        cloud_broker.stop()


def _run_block(block: Block, root: Path, env: dict[str, str], port: int) -> None:
    """Each command in its own shell (so each prompt gets its own input); ``NAME=value`` lines carry over."""
    scope = dict(env)
    for command in _commands(block.body):
        assignment = re.fullmatch(r"([A-Z_]+)=(\S+)", command)
        if assignment:
            scope[assignment[1]] = _relocate(assignment[2], root).strip("'\"")
            continue
        _run(command, root, scope, port)


def _alert_crosses(gateway: _Broker, cloud: _Broker, ca: Path) -> None:
    watcher = Probe(cloud.port, ca, "svc.cloud-bridge", SECRETS["BRIDGE_PASSWORD"])
    agent = Probe(gateway.port, ca, "oslo-north", SECRETS["SITE_PASSWORD"])
    try:
        assert watcher.wait_connected() and agent.wait_connected()
        watcher.subscribe("pdm/v1/+/gateway/+/link")
        watcher.subscribe("pdm/v1/+/+/alert")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic, payload, _retained = watcher.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if topic.endswith("/gateway/gw-17/link") and payload == b"1":
                break
        assert agent.publish("pdm/v1/oslo-north/hp-1/alert", b"from-the-gateway") in ACCEPTED
        assert watcher.collect(until=b"from-the-gateway")[-1] == ("pdm/v1/oslo-north/hp-1/alert", b"from-the-gateway")
    finally:
        agent.close()
        watcher.close()
