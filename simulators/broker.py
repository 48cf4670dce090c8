"""Real MQTT brokers on a free local port, for the demo and the tests.

* :class:`MosquittoBroker` runs the ``mosquitto`` binary with a generated config (MQTT 3.1.1 and 5,
  shared subscriptions, persistence off) — the broker of production gateways.
* :class:`EmbeddedBroker` runs amqtt, a pure-Python broker, on a background event loop: the demo's
  default and the test fallback where Mosquitto is not installed. amqtt 0.12 speaks MQTT 3.1.1 only
  and has no ``$share`` (DESIGN.md §8), so clients talk 3.1.1 to it.

:func:`start_broker` picks one. Both stop cleanly and are context managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

__all__ = ["BrokerHandle", "EmbeddedBroker", "MosquittoBroker", "free_port", "start_broker"]

_START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_listening(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stderr is not None:
        proc.stderr.close()


class BrokerHandle(Protocol):
    """What callers need from a running broker."""

    host: str
    port: int

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]: ...

    @property
    def protocol(self) -> Literal["5", "3.1.1"]: ...

    def stop(self) -> None: ...


@dataclass
class MosquittoBroker:
    """A private ``mosquitto`` process on ``port`` (anonymous, no persistence, loopback only)."""

    host: str = "127.0.0.1"
    port: int = 0
    extra_config: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]:
        """Which broker implementation this is."""
        return "mosquitto"

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """The newest MQTT version the broker speaks."""
        return "5"

    @staticmethod
    def available() -> bool:
        """True when the mosquitto binary is on PATH (or in /usr/sbin)."""
        return MosquittoBroker._binary() is not None

    @staticmethod
    def _binary() -> str | None:
        return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")

    def start(self) -> Self:
        """Start the process and wait until it accepts connections."""
        binary = self._binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        if self.port == 0:
            self.port = free_port(self.host)
        self._dir = tempfile.TemporaryDirectory(prefix="pdm-mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "log_dest none\n"
            f"{self.extra_config}\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if not _wait_listening(self.host, self.port, _START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"mosquitto did not start listening on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Terminate the process and remove its config."""
        _terminate(self._proc)
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class EmbeddedBroker:
    """amqtt (MQTT 3.1.1, anonymous) in a child process on ``port``.

    A child process rather than a thread: amqtt leaves client transports for the garbage collector,
    and in-process that noise lands in whatever code runs next; a process also dies cleanly.
    """

    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]:
        """Which broker implementation this is."""
        return "amqtt"

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """amqtt 0.12 refuses MQTT 5 CONNECT (measured, DESIGN.md §8)."""
        return "3.1.1"

    def start(self) -> Self:
        """Start the broker process and wait until it accepts connections."""
        if self.port == 0:
            self.port = free_port(self.host)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.broker", self.host, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not _wait_listening(self.host, self.port, _START_TIMEOUT_S):
            err = self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.poll() is not None and \
                self._proc.stderr is not None else ""
            self.stop()
            raise RuntimeError(f"embedded broker did not listen on {self.host}:{self.port}: {err}")
        return self

    def stop(self) -> None:
        """Terminate the broker process."""
        _terminate(self._proc)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.stop()


async def _serve_amqtt(host: str, port: int) -> None:
    from amqtt.broker import Broker  # imported lazily: only the demo and the test fallback need it

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 500}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def start_broker(prefer: Literal["mosquitto", "embedded", "auto"] = "auto") -> MosquittoBroker | EmbeddedBroker:
    """Start a broker on a free port: Mosquitto when asked for (or when ``auto`` and installed), else amqtt."""
    if prefer == "mosquitto" or (prefer == "auto" and MosquittoBroker.available()):
        return MosquittoBroker().start()
    return EmbeddedBroker().start()


if __name__ == "__main__":
    # `python -m simulators.broker HOST PORT`: the embedded broker's child process.
    # amqtt logs every probe connection and client hiccup at ERROR; the parent reports what matters.
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_serve_amqtt(sys.argv[1], int(sys.argv[2])))
