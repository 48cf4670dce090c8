"""The field rig of the reliability and security suites: real processes, real broker, real desk.

Pieces (each usable alone):

* :class:`ShippedBroker` — Mosquitto from the shipped ``config/mosquitto`` (TLS, password file, ACL,
  persistence) on a free port, restartable and killable; a throwaway CA from ``make-test-ca.sh``.
* :class:`Service` — a real ``edge-agent run`` or ``cloud-bridge run`` subprocess with its TOML config
  in a temp dir, its output captured to a file per start (so tests can scan logs for secrets and
  tracebacks), readiness read from its own log (never from a port another process may hold),
  ``kill9()`` and ``stop()``.
* :class:`FaultFs` — an ``LD_PRELOAD`` library that kills a service with SIGKILL as it enters its
  N-th ``fsync``/``fdatasync`` of a file (a hard stop between write and sync), or makes its writes
  below a directory fail with EROFS/ENOSPC while a flag file exists (a file system turning read-only).
* :func:`agent_config` / :func:`bridge_config` — the configs, with free ports and fresh keys.
* :class:`Sensors` — publishes telemetry (or anything) with a bounded window of QoS 1 PUBACKs.
* :func:`fleet_messages` — a seeded ``pdm-sim fleet`` run of a small scenario as telemetry messages.
* :func:`check_tickets` — every expected alert is exactly one desk ticket carrying its events in order.

Secrets are generated per test (:func:`new_secret`), written 0600 into the test's temp dir, and
listed by :meth:`Rig.secrets` so a test can prove none of them reaches a log, metric or ticket.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pdm_common.contracts import AlertEvent
from pdm_common.mqtt import InboundMessage, MqttClient, MqttSettings, TlsSettings
from simulators.broker import free_port
from simulators.fleet.runner import generate
from simulators.fleet.scenario import load_scenario
from tests.mqtt_helpers import unique_id
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO_DIR = REPO / "config" / "mosquitto"

USERS = ("oslo-north", "bergen-1", "svc.cloud-bridge", "svc.ops", "sensors.oslo-north")
"""MQTT accounts as the shipped ACL (config/mosquitto/acl) names them: a site account per site (its
gateway logs in with it), dotted service accounts, and one site's sensors."""

SITE = "oslo-north"
GATEWAY = "gw-17"
"""gw-17 serves oslo-north (logging in as the site account ``oslo-north``); gw-18 serves bergen-1."""


def new_secret() -> str:
    """A fresh Standard Webhooks secret (``whsec_`` + base64 of 32 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def write_secret(directory: Path, name: str, value: str) -> Path:
    """Write ``value`` to ``directory/name`` readable by the owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML for the plain nested dicts of a service config (strings, numbers, booleans, lists, tables)."""
    lines: list[str] = []
    _table(lines, "", data)
    return "\n".join(lines) + "\n"


def _table(lines: list[str], name: str, body: Mapping[str, Any]) -> None:
    if name:
        lines.append(f"[{name}]")
    for key, value in body.items():
        if not isinstance(value, Mapping):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in body.items():
        if isinstance(value, Mapping):
            _table(lines, f"{name}.{_key(key)}" if name else _key(key), value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


# --- broker -------------------------------------------------------------------------------------


@dataclass
class ShippedBroker:
    """Mosquitto running the shipped ``pdm-edge.conf`` and ``acl`` on a free loopback port.

    The listener, file paths and persistence location are moved into ``workdir``; everything else
    (TLS only, no anonymous clients, ACL, bounds, persistence on) is the shipped file. The port stays
    the same across :meth:`restart`, so clients reconnect to it.
    """

    workdir: Path
    ca_dir: Path
    port: int = 0
    passwords: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    """ACL text instead of the shipped ``config/mosquitto/acl`` (a test that needs a refusal)."""
    bridge_to: ShippedBroker | None = None
    """Run the shipped gateway-to-cloud Mosquitto bridge to this (started) cloud broker."""
    _proc: subprocess.Popen[bytes] | None = None
    _starts: int = 0
    _bound: bool = False

    @staticmethod
    def binaries() -> tuple[str, str]:
        """``mosquitto`` and ``mosquitto_passwd``, or skip the test with the reason."""
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        passwd = shutil.which("mosquitto_passwd")
        if binary is None or passwd is None or shutil.which("openssl") is None:
            pytest.skip("mosquitto, mosquitto_passwd and openssl are needed (apt-get install mosquitto openssl)")
        return binary, passwd

    def start(self) -> ShippedBroker:
        """Write the config on first use and start the broker; waits until it listens.

        A port taken by another process between :func:`free_port` and the broker's bind (parallel
        test workers) is replaced by a new one on the first start; later starts keep the port.
        """
        for _attempt in range(3):
            if not self.port:
                self._configure(free_port())
            self._starts += 1
            log_path = self.workdir / f"mosquitto.{self._starts}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen([self.binaries()[0], "-c", str(self.workdir / "mosquitto.conf")],
                                        stdout=log, stderr=log)
            # "running" is logged once every listener is bound; a port another process holds answers
            # connections too, so listening alone does not say the broker is ours.
            wait_until(lambda: _broker_up(proc, log_path, self.port), 10.0)  # noqa: B023 (called at once)
            if proc.poll() is None:
                self._proc, self._bound = proc, True
                return self
            if self._bound or "Address already in use" not in log_path.read_text(errors="replace"):
                break
            self.port = 0  # another process took the port before the broker bound it: pick a new one
        raise RuntimeError(f"mosquitto did not start: {self.log()[-2000:]}")

    def _configure(self, port: int) -> None:
        """Lay out the shipped config, ACL, passwords (and the link to ``bridge_to``) for ``port``."""
        passwd_tool = self.binaries()[1]
        self.port = port
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(self.ca_dir / name, self.workdir / name)
        (self.workdir / "acl").write_text(self.acl or (MOSQUITTO_DIR / "acl").read_text(encoding="utf-8"),
                                          encoding="utf-8")
        passwd = self.workdir / "passwd"
        if not passwd.exists():
            passwd.touch()
            for user in USERS:
                self.passwords[user] = secrets.token_urlsafe(16)
                subprocess.run([passwd_tool, "-b", str(passwd), user, self.passwords[user]], check=True,
                               capture_output=True, timeout=30)
        conf = (MOSQUITTO_DIR / "pdm-edge.conf").read_text(encoding="utf-8")
        conf = conf.replace("/etc/mosquitto/pdm/", f"{self.workdir}/")
        conf = re.sub(r"(?m)^listener 8883.*$", f"listener {port} 127.0.0.1", conf)
        conf = re.sub(r"(?m)^persistence_location .*$", "", conf)
        # Debian's stock mosquitto.conf, which the drop-in relies on, turns persistence on.
        conf += f"\npersistence true\npersistence_location {self.workdir}/\nlog_dest stderr\nuser root\n"
        if self.bridge_to is not None:
            conf += "\n" + self._link(self.bridge_to)
        (self.workdir / "mosquitto.conf").write_text(conf, encoding="utf-8")

    def _link(self, cloud: ShippedBroker) -> str:
        """The shipped gateway-to-cloud bridge (config/mosquitto/bridge-to-cloud.conf) aimed at ``cloud``."""
        shutil.copy(cloud.workdir / "ca.crt", self.workdir / "cloud-ca.crt")
        link = (MOSQUITTO_DIR / "bridge-to-cloud.conf").read_text(encoding="utf-8")
        link = link.replace("/etc/mosquitto/pdm/", f"{self.workdir}/")
        link = link.replace("address cloud.example.com:8883", f"address localhost:{cloud.port}")
        link = link.replace("remote_password the-oslo-north-cloud-password",
                            f"remote_password {cloud.passwords['oslo-north']}")
        # The shipped back-off (5 s doubling to 60 s) would make a CI test wait a minute for the link.
        return link.replace("restart_timeout 5 60", "restart_timeout 1 2")

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password file and ACL (mosquitto(8), "Signals")."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)

    def set_acl(self, text: str) -> None:
        """Replace the ACL file (takes effect on :meth:`reload` or the next start)."""
        self.acl = text
        (self.workdir / "acl").write_text(text, encoding="utf-8")

    def log(self) -> str:
        """Everything the broker logged, over all starts."""
        files = sorted(self.workdir.glob("mosquitto.*.log"), key=lambda p: int(p.suffixes[-2][1:]))
        return "".join(p.read_text(errors="replace") for p in files)

    def stop(self) -> None:
        """Stop the broker cleanly (it saves its persistence file)."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def kill(self) -> None:
        """kill -9 the broker."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def password_file(self, user: str) -> Path:
        """A 0600 file holding ``user``'s broker password."""
        return write_secret(self.workdir / "client-secrets", f"{user}.password", self.passwords[user])

    def settings(self, user: str, **overrides: Any) -> MqttSettings:
        """Settings of ``user`` over TLS with host-name verification, fast reconnects."""
        base: dict[str, Any] = {
            "host": "localhost", "port": self.port, "username": user, "password_file": self.password_file(user),
            "tls": TlsSettings(enabled=True, ca_file=self.workdir / "ca.crt"),
            "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
        }
        base.update(overrides)
        return MqttSettings.model_validate(base)

    def mqtt_table(self, user: str, client_id: str) -> dict[str, Any]:
        """The ``[mqtt]`` table of a service config for ``user``."""
        return {"host": "localhost", "port": self.port, "protocol": "5", "client_id": client_id, "username": user,
                "password_file": str(self.password_file(user)), "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                "keepalive_s": 10, "tls": {"enabled": True, "ca_file": str(self.workdir / "ca.crt")}}


def _broker_up(proc: subprocess.Popen[bytes], log: Path, port: int) -> bool:
    """The broker ended (False on the caller's next look), or logged "running" and listens."""
    return proc.poll() is not None or (" running" in log.read_text(errors="replace") and _listening(port))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def make_test_ca(out: Path) -> Path:
    """A throwaway CA and a broker certificate for localhost (config/mosquitto/make-test-ca.sh)."""
    ShippedBroker.binaries()
    subprocess.run(["sh", str(MOSQUITTO_DIR / "make-test-ca.sh"), str(out), "localhost", GATEWAY], check=True,
                   capture_output=True, timeout=120)
    return out


# --- services -----------------------------------------------------------------------------------


RUNNING: set[Service] = set()
"""Every service a test made: the rig kills what a failed test left running (:func:`kill_leftovers`)."""


def kill_leftovers(root: Path) -> None:
    """kill -9 every service below ``root`` still running (a test that failed before stopping them).

    Only the rig's own: a session-wide field of another module keeps running.
    """
    for service in list(RUNNING):
        if service.workdir.resolve().is_relative_to(root.resolve()):
            if service.alive:
                service.kill9()
            RUNNING.discard(service)


READY_EVENTS = {"edge_agent.cli": "event=mqtt.connected", "cloud_bridge.cli": "event=bridge.ready"}
"""The log event that says a service serves: the agent is connected and subscribed (``mqtt.connected``
follows the SUBACKs), the bridge is connected and delivering (``bridge.ready``)."""


class Service:
    """A real service process (``edge-agent run`` / ``cloud-bridge run``) with captured output.

    Args:
        name: for log file names.
        module: the CLI module (``edge_agent.cli`` or ``cloud_bridge.cli``).
        config: the TOML config path.
        workdir: where output files go (``{name}.{n}.log`` per start).
    """

    def __init__(self, name: str, module: str, config: Path, workdir: Path) -> None:
        self.name = name
        self.config = config
        self.workdir = workdir
        self._argv = [sys.executable, "-m", module, "--config", str(config), "run"]
        self._ready_event = READY_EVENTS.get(module, "")
        self.proc: subprocess.Popen[bytes] | None = None
        RUNNING.add(self)
        self.starts = 0
        self.exit_codes: list[int] = []
        self.started_at = 0.0

    @classmethod
    def agent(cls, config: Path, workdir: Path, name: str = "agent") -> Service:
        """An ``edge-agent run`` of ``config``."""
        return cls(name, "edge_agent.cli", config, workdir)

    @classmethod
    def bridge(cls, config: Path, workdir: Path, name: str = "bridge") -> Service:
        """A ``cloud-bridge run`` of ``config``."""
        return cls(name, "cloud_bridge.cli", config, workdir)

    def start(self, *, env: Mapping[str, str] | None = None) -> Service:
        """Start the process (output to a new log file); ``env`` adds to the environment of this start."""
        self.starts += 1
        log = (self.workdir / f"{self.name}.{self.starts}.log").open("wb")
        full = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        full.pop("PDM_CONFIG", None)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self._argv, env=full, stdout=log, stderr=log, cwd=self.workdir)
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until this start logged its ready event; returns the seconds since :meth:`start`.

        Raises:
            AssertionError: the process ended or did not get ready in time (with its log's tail).
        """
        assert wait_until(lambda: self._ready_event in self.current_log() or not self.alive, timeout_s), \
            f"{self.name} not ready within {timeout_s} s:\n{self.current_log()[-3000:]}"
        assert self.alive, f"{self.name} exited during start-up:\n{self.current_log()[-3000:]}"
        return time.monotonic() - self.started_at

    @property
    def alive(self) -> bool:
        """The process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind, like a power cut of the process."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.exit_codes.append(self.proc.wait(10))
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the process keeps its connections but does nothing (a long stall)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status (kills and fails after ``timeout_s``)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} did not stop within {timeout_s} s of SIGTERM") from None
        finally:
            self.proc = None
        self.exit_codes.append(code)
        return code

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status once the process ended by itself, or None if it still runs after ``timeout_s``."""
        if self.proc is None:
            return self.exit_codes[-1] if self.exit_codes else None
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self.exit_codes.append(code)
        self.proc = None
        return code

    def current_log(self) -> str:
        """What the current (latest) start wrote."""
        path = self.workdir / f"{self.name}.{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        """Everything the process wrote, over all starts."""
        files = sorted(self.workdir.glob(f"{self.name}.*.log"), key=lambda p: int(p.suffixes[-2][1:]))
        return "".join(p.read_text(errors="replace") for p in files)

    def tracebacks(self) -> int:
        """How many Python tracebacks the process printed (over all starts)."""
        return self.log().count("Traceback (most recent call last)")


def start_all(*services: Service, timeout_s: float = 60.0) -> None:
    """Start services at once (their imports overlap) and wait until each is ready."""
    for service in services:
        service.start()
    for service in services:
        service.wait_ready(timeout_s)


@dataclass(frozen=True)
class FaultFs:
    """``tests/fault_fs.c`` built as a preload library: storage faults inside a real service.

    :meth:`kill_at_sync` — SIGKILL on entering the N-th sync of a file (a hard stop between write
    and sync); :meth:`hit` says afterwards which sync it died at. :meth:`faults_below` — writes below
    a directory fail with EROFS (or ENOSPC/EIO) while a flag file exists (:meth:`fail`, :meth:`heal`).
    """

    library: Path

    @classmethod
    def build(cls, out: Path) -> FaultFs:
        """Compile the library into ``out`` (skips the test when no C compiler is installed)."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            pytest.skip("a C compiler is needed for the storage-fault library (apt-get install gcc)")
        out.mkdir(parents=True, exist_ok=True)
        library = out / "fault_fs.so"
        source = REPO / "tests" / "fault_fs.c"
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True,
                       capture_output=True, timeout=120)
        return cls(library)

    def kill_at_sync(self, at: int, report: Path, match: str = "") -> dict[str, str]:
        """Environment of a start that dies on entering its ``at``-th sync of a path containing ``match``."""
        report.unlink(missing_ok=True)
        env = {"LD_PRELOAD": str(self.library), "PDM_FSYNC_KILL_AT": str(at), "PDM_FSYNC_REPORT": str(report)}
        if match:
            env["PDM_FSYNC_MATCH"] = match
        return env

    @staticmethod
    def hit(report: Path) -> str | None:
        """The path whose sync the process died at, or None."""
        if not report.exists():
            return None
        return report.read_text(errors="replace").strip().split(" ", 1)[-1]

    def faults_below(self, directory: Path, flag: Path) -> dict[str, str]:
        """Environment of a start whose writes below ``directory`` fail while ``flag`` exists."""
        return {"LD_PRELOAD": str(self.library), "PDM_FAULT_DIR": str(directory.resolve()),
                "PDM_FAULT_FLAG": str(flag)}

    @staticmethod
    def fail(flag: Path, errno_name: str = "EROFS") -> None:
        """Turn the fault on: writes fail with ``errno_name`` (EROFS, ENOSPC or EIO)."""
        flag.write_text(errno_name, encoding="utf-8")

    @staticmethod
    def heal(flag: Path) -> None:
        """Turn the fault off."""
        flag.unlink(missing_ok=True)


def metric(port: int, name: str, labels: str = "") -> float | None:
    """One sample of a Prometheus endpoint on localhost, or None when absent or unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return None


def agent_drained(port: int) -> bool:
    """The agent's outbox is empty and no telemetry arrived for half a second (its backlog is worked off)."""
    before = metric(port, "pdm_agent_messages_received_total", 'channel="telemetry"')
    wait_until(lambda: False, 0.5)
    after = metric(port, "pdm_agent_messages_received_total", 'channel="telemetry"')
    return before == after and metric(port, "pdm_agent_outbox_depth") == 0.0


def metrics_text(port: int) -> str:
    """The whole Prometheus exposition of a local endpoint ('' when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


@dataclass
class Keys:
    """The keys of one rig: the gateway's alert-signing key, the command sender's key, the webhook's."""

    directory: Path
    gateway: str = field(default_factory=new_secret)
    gateway_b: str = field(default_factory=new_secret)
    commands: str = field(default_factory=new_secret)
    webhook: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def file(self, name: str) -> Path:
        """The 0600 file holding the key called ``name`` (gateway, commands or webhook)."""
        return write_secret(self.directory, f"{name}.key", getattr(self, name))

    def all(self) -> list[str]:
        """Every secret, for the no-secret-in-output scans."""
        return [self.gateway, self.gateway_b, self.commands, self.webhook]


def agent_config(workdir: Path, broker: ShippedBroker, keys: Keys, *, gateway: str = GATEWAY, site: str = SITE,
                 detection: Mapping[str, Any] | None = None, **over: Any) -> tuple[Path, int]:
    """Write an agent config for the rig; returns its path and the metrics port."""
    port = free_port()
    cfg: dict[str, Any] = {
        "gateway": gateway, "site": site, "state_dir": str(workdir / "agent-state"), "clock": "telemetry",
        "inbound_queue_max": 100_000, "status_interval_s": 5.0, "checkpoint_interval_s": 5.0,
        "mqtt": broker.mqtt_table(site, f"pdm-edge-agent-{gateway}"),
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "commands": {"keys": {"cloud-bridge": str(keys.file("commands"))}},
        "signing": {"key_id": gateway, "secret_file": str(keys.file("gateway"))},
        "detection": dict(detection or {}),
        "log": {"level": "info"},
    }
    cfg.update(over)
    path = workdir / f"agent-{gateway}.toml"
    path.write_text(dump_toml(cfg), encoding="utf-8")
    return path, port


def bridge_config(workdir: Path, broker: ShippedBroker, keys: Keys, desk_url: str, **over: Any) -> tuple[Path, int]:
    """Write a bridge config delivering to the desk simulator's signed webhook; returns path and metrics port."""
    port = free_port()
    cfg: dict[str, Any] = {
        "replica_id": "rig-bridge", "share_group": "bridge",
        "registry_path": str(REPO / "config" / "assets.example.toml"),
        "fault_actions_path": str(REPO / "config" / "fault-actions.toml"),
        "mqtt": broker.mqtt_table("svc.cloud-bridge", "cloud-bridge-rig"),
        "desks": {"main": {"kind": "webhook", "base_url": desk_url, "path": "/webhook",
                           "hmac_secret_file": str(keys.file("webhook")), "timeout_s": 2.0}},
        "outbox": {"path": str(workdir / "bridge-outbox.db"), "lease_s": 10.0},
        "retry": {"base_s": 0.05, "cap_s": 0.5},
        "delivery": {"workers": 4, "poll_s": 0.05},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
    }
    cfg.update(_gateway_tables(keys))
    cfg.update(over)
    path = workdir / "bridge.toml"
    path.write_text(dump_toml(cfg), encoding="utf-8")
    return path, port


GATEWAY_SITES = {"gw-17": ("oslo-north", "gateway"), "gw-18": ("bergen-1", "gateway_b")}
"""The shipped ACL's gateways, their sites, and which :class:`Keys` secret each signs alerts with."""


def _gateway_tables(keys: Keys) -> dict[str, Any]:
    """The bridge's ``[gateways.<gateway>]`` site and secret tables, once the bridge has them.

    The bridge settings gain them with site ownership (bridge lane, issue #14.1); until then a config
    naming them would be refused as unknown keys, so they are written only where the field exists.
    """
    from cloud_bridge.config import BridgeSettings

    if "gateways" not in BridgeSettings.model_fields:
        return {}
    return {"gateways": {gw: {"site": site, "secret_file": str(keys.file(name))}
                         for gw, (site, name) in GATEWAY_SITES.items()}}


# --- MQTT clients -------------------------------------------------------------------------------


class Sensors:
    """Publishes messages at QoS 1 keeping at most ``window`` unacknowledged; reconnects by itself."""

    def __init__(self, settings: MqttSettings, *, window: int = 200) -> None:
        self._acked: set[int] = set()
        self._refused: set[int] = set()
        self._pending: deque[int] = deque()
        self._cond = threading.Condition()
        self._window = window
        self.client = MqttClient(settings, client_id=unique_id("rig-sensors"), on_publish_ack=self._ack,
                                 on_publish_refused=self._refuse)

    def _ack(self, mid: int) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _refuse(self, mid: int, _reason: str) -> None:
        with self._cond:
            self._refused.add(mid)
            self._cond.notify_all()

    def __enter__(self) -> Sensors:
        self.client.start()
        if not self.client.wait_connected(15):
            raise RuntimeError("rig sensors could not connect to the broker")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.stop()

    def send(self, messages: Iterable[tuple[str, bytes]], *, timeout_s: float = 60.0) -> int:
        """Publish every message; returns how many. Waits for PUBACK of all of them."""
        n = 0
        for topic, payload in messages:
            self.publish(topic, payload, timeout_s)
            n += 1
        self.flush(timeout_s)
        return n

    def publish(self, topic: str, payload: bytes, timeout_s: float = 60.0) -> None:
        """Publish one message, waiting only when the window of unacknowledged ones is full."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                mid = self.client.publish(topic, payload, qos=1)
                break
            except Exception:  # MqttNotConnected while the broker restarts
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with self._cond:
            self._pending.append(mid)
            while len(self._pending) >= self._window:
                self._settle(deadline)

    def _settle(self, deadline: float) -> None:
        head = self._pending[0]
        if not self._cond.wait_for(lambda: head in self._acked or head in self._refused,
                                   max(0.0, deadline - time.monotonic())):
            raise TimeoutError("no PUBACK within the timeout")
        if head in self._refused:
            raise RuntimeError(f"the broker refused a publish of this rig client (message {head}): check the ACL")
        self._acked.discard(self._pending.popleft())

    def try_send(self, topic: str, payload: bytes, *, timeout_s: float = 30.0) -> bool:
        """Publish one message; True once acknowledged, False when the broker refused it.

        Mosquitto answers an ACL refusal with PUBACK reason "not authorized" to an MQTT 5 client
        (the adapter's ``on_publish_refused``), so a refusal is known at once, without a timeout.

        Raises:
            TimeoutError: no PUBACK of either kind within ``timeout_s``.
        """
        self.flush()
        mid = self.client.publish(topic, payload, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acked or mid in self._refused, timeout_s):
                raise TimeoutError(f"no PUBACK for a publish on {topic} within {timeout_s} s")
            acked = mid in self._acked
            self._acked.discard(mid)
            self._refused.discard(mid)
        return acked

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every message sent so far is acknowledged."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                self._settle(deadline)


class Watcher:
    """Records every message on some topic filters (a persistent session, so nothing is missed)."""

    def __init__(self, settings: MqttSettings, *filters: str) -> None:
        self.messages: list[InboundMessage] = []
        self._lock = threading.Lock()
        self.client = MqttClient(settings, client_id=unique_id("rig-watcher"),
                                 subscriptions=[(f, 1) for f in filters], on_message=self._on)

    def _on(self, msg: InboundMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def __enter__(self) -> Watcher:
        self.client.start()
        if not self.client.wait_connected(15):
            raise RuntimeError("rig watcher could not connect to the broker")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.stop()

    def on(self, suffix: str) -> list[InboundMessage]:
        """Messages whose topic ends with ``suffix``."""
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def alerts(self) -> list[AlertEvent]:
        """Every alert event seen, parsed, in arrival order."""
        return [AlertEvent.from_json(m.payload, max_bytes=1 << 20) for m in self.on("/alert")]

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter seen, as JSON objects."""
        return [json.loads(m.payload) for m in self.on("/deadletter")]


# --- fleet --------------------------------------------------------------------------------------


SMALL_FLEET = """
name = "rig"
description = "Reliability rig: three heat pumps and a pump of one site, faults in the second half."
start = 2026-01-05T00:00:00Z
days = {days}
sample_period_s = {period}
heat_pumps = 3
pumps = 1
random_cold_spells = false

[[sites]]
name = "oslo-north"
climate = "nordic"

[[faults]]
asset = "hp-0001"
code = "refrigerant_leak"
onset_day = {onset}
span_days = {span}

[[faults]]
asset = "pump-0001"
code = "bearing_wear"
onset_day = {onset}
span_days = {span}

[[sensor_faults]]
asset = "hp-0002"
metric = "flow_temp_c"
mode = "stuck"
start_day = {onset}
end_day = {failure}
"""

FAST_DETECTION: dict[str, Any] = {"warmup_samples": 150, "warmup_h": 12.0, "debounce_n": 4, "debounce_m": 6,
                                  "recovering_after_h": 2.0, "resolve_after_h": 6.0, "min_update_interval_h": 2.0,
                                  "stuck_samples": 12, "dropout_samples": 6, "silence_s": 6 * 3600.0}
"""Detection tuned for the rig's 5-minute samples: warm in half a day, decide in a few samples."""


def fleet_messages(workdir: Path, *, seed: int, days: float = 5.0, period_s: int = 300) -> list[tuple[str, bytes]]:
    """The telemetry of a small seeded fleet (one site), as ``(topic, payload)`` in time order.

    The faults start at 40 % of the run and fail at 96 % (2.0 and 4.8 days of the default five).
    The scenario is written to ``workdir/rig-fleet.toml`` (what a failing test leaves to look at).
    """
    path = workdir / "rig-fleet.toml"
    path.write_text(_scenario(days, period_s), encoding="utf-8")
    return list(fleet_run(seed, days, period_s))


def _scenario(days: float, period_s: int) -> str:
    onset, failure = round(days * 0.4, 3), round(days * 0.96, 3)
    # The simulator decides when a unit trips; ``failure`` sets the faults' time scale (onset + span).
    return SMALL_FLEET.format(days=days, period=period_s, onset=onset, span=failure - onset, failure=failure)


@functools.lru_cache(maxsize=8)
def fleet_run(seed: int, days: float = 5.0, period_s: int = 300) -> tuple[tuple[str, bytes], ...]:
    """:func:`fleet_messages` without the scenario file, generated once per test process (a run is
    deterministic for its seed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rig-fleet.toml"
        path.write_text(_scenario(days, period_s), encoding="utf-8")
        run = generate(load_scenario(path), seed)
        out = []
        for rec in run.iter_records():
            payload = json.dumps({k: rec[k] for k in ("ts", "seq", "kind", "metrics")}, separators=(",", ":"))
            out.append((f"pdm/v1/{rec['site']}/{rec['asset']}/telemetry", payload.encode()))
    return tuple(out)


# --- desk ---------------------------------------------------------------------------------------


@dataclass
class TicketReport:
    """What the desk holds against what was expected."""

    expected_alerts: int
    tickets: int
    missing: list[str]
    duplicates: dict[str, int]
    wrong_history: dict[str, tuple[list[int], list[int]]]
    unexpected: list[str]

    @property
    def lost_events(self) -> int:
        """Expected events that no ticket's history holds."""
        return sum(len(set(want) - set(got)) for want, got in self.wrong_history.values())

    @property
    def ok(self) -> bool:
        """Exactly one ticket per expected alert, each with exactly its events in order, nothing else."""
        return not (self.missing or self.duplicates or self.wrong_history or self.unexpected)


def check_tickets(tickets: Sequence[Mapping[str, Any]], expected: Mapping[str, Sequence[int]]) -> TicketReport:
    """Compare webhook tickets (``/_sim/tickets``) with the expected ``alert_id -> event_seqs``.

    A ticket's history is the ``event_seq`` of each applied alert event, in the order the desk applied
    them; it must equal the expected sequence exactly (no event lost, none twice, none out of order).
    """
    per_key = Counter(str(t["dedup_key"]) for t in tickets)
    history: dict[str, list[int]] = {}
    for t in tickets:
        # Operations without an event_seq are the bridge's own notes (an SLA warning), not alert events.
        history.setdefault(str(t["dedup_key"]), []).extend(int(h["body"]["event_seq"]) for h in t["history"]
                                                           if "event_seq" in h["body"])
    wrong = {k: (list(want), history.get(k, [])) for k, want in expected.items()
             if k in history and history[k] != list(want)}
    return TicketReport(
        expected_alerts=len(expected), tickets=len(tickets),
        missing=sorted(set(expected) - set(history)),
        duplicates={k: n for k, n in per_key.items() if n > 1},
        wrong_history=wrong,
        unexpected=sorted(set(history) - set(expected)),
    )


def expected_histories(events: Iterable[AlertEvent]) -> dict[str, list[int]]:
    """``alert_id -> sorted distinct event_seqs`` of a stream of alert events (repeats collapse)."""
    seqs: dict[str, set[int]] = {}
    for ev in events:
        seqs.setdefault(ev.alert_id, set()).add(ev.event_seq)
    return {k: sorted(v) for k, v in seqs.items()}


def raised_events(log: str) -> dict[str, list[int]]:
    """``alert_id -> sorted distinct event_seqs`` the agent stored (its ``alert.event`` log lines).

    The agent logs each alert event as it goes into the outbox: whatever it logged was accepted, and
    must reach the broker and the desk however the process dies afterwards.
    """
    seqs: dict[str, set[int]] = {}
    for line in log.splitlines():
        if "event=alert.event " in line:
            found = dict(re.findall(r"(alert_id|event_seq)=(\S+)", line))
            seqs.setdefault(found["alert_id"], set()).add(int(found["event_seq"]))
    return {k: sorted(v) for k, v in seqs.items()}


def missing_events(raised: Mapping[str, Sequence[int]], published: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Per alert, the raised event_seqs that were never published."""
    out = {k: sorted(set(v) - set(published.get(k, []))) for k, v in raised.items()}
    return {k: v for k, v in out.items() if v}


def scan_for_secrets(texts: Mapping[str, str], secrets_: Iterable[str]) -> list[str]:
    """``where: which`` for every secret (or its decoded key bytes' base64) that appears in a text."""
    found = []
    for secret in secrets_:
        needles = {secret}
        if secret.startswith("whsec_"):
            needles.add(secret.removeprefix("whsec_"))
        for where, text in texts.items():
            for needle in needles:
                if needle and needle in text:
                    found.append(f"{where}: {needle[:6]}…")
    return found


# --- pipeline -----------------------------------------------------------------------------------


def fleet_reference(seed: int, *, days: float = 5.0, period_s: int = 300,
                    detection: Mapping[str, Any] = FAST_DETECTION) -> dict[str, list[int]]:
    """:func:`reference_alerts` of :func:`fleet_messages` ``(seed, days, period_s)``, computed once per process."""
    return {k: list(v) for k, v in _reference(seed, days, period_s, json.dumps(dict(detection), sort_keys=True))}


@functools.lru_cache(maxsize=8)
def _reference(seed: int, days: float, period_s: int, detection: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    found = reference_alerts(fleet_run(seed, days, period_s), json.loads(detection))
    return tuple((k, tuple(v)) for k, v in found.items())


def reference_alerts(messages: Sequence[tuple[str, bytes]], detection: Mapping[str, Any],
                     *, gateway: str = GATEWAY, tick_s: float = 900.0) -> dict[str, list[int]]:
    """``alert_id -> event_seqs`` the engine raises on ``messages`` with nothing going wrong.

    The same engine the agent runs, fed in process, in order, with a tick every ``tick_s`` of
    telemetry time: the run a fault-free field would give, to compare a faulty run with.
    """
    from datetime import timedelta

    from edge_agent.detection.settings import DetectionSettings
    from edge_agent.engine import DetectionEngine
    from pdm_common import __version__
    from pdm_common.contracts import Telemetry
    from pdm_common.topics import Topics

    engine = DetectionEngine(DetectionSettings.model_validate(dict(detection)), gateway=gateway,
                             agent_version=__version__)
    topics = Topics("pdm/v1")
    events: list[AlertEvent] = []
    next_tick = None
    for topic, payload in messages:
        where = topics.parse(topic)
        tel = Telemetry.from_wire(where.site, where.asset, payload)
        events += [e for e in engine.process(tel, tel.ts) if isinstance(e, AlertEvent)]
        if next_tick is None or tel.ts >= next_tick:
            next_tick = tel.ts + timedelta(seconds=tick_s)
            events += [e for e in engine.tick(tel.ts) if isinstance(e, AlertEvent)]
    return expected_histories(events)


def per_asset(histories: Mapping[str, Sequence[int]]) -> Counter[str]:
    """Alerts (tickets) per asset of ``alert_id -> event_seqs``."""
    return Counter(alert_id.split(":")[1] for alert_id in histories)


def contiguous(histories: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """The alerts whose event_seqs are not exactly 1..n (an event lost or a seq reused)."""
    return {k: list(v) for k, v in histories.items() if list(v) != list(range(1, len(v) + 1))}


def conflicting_copies(events: Iterable[AlertEvent]) -> list[tuple[str, int]]:
    """``(alert_id, event_seq)`` published twice with different content (a seq reused after a crash)."""
    seen: dict[tuple[str, int], bytes] = {}
    bad = []
    for ev in events:
        body = ev.signed_body()
        key = (ev.alert_id, ev.event_seq)
        if key in seen and seen[key] != body:
            bad.append(key)
        seen.setdefault(key, body)
    return sorted(set(bad))
