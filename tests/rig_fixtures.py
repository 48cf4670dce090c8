"""Pytest fixtures over :mod:`tests.rig`, shared by tests/chaos and tests/security (imported by their conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulators.desk.auth import DeskCredentials
from simulators.desk.server import DeskSimulator
from tests.rig import FaultFs, Keys, ShippedBroker, kill_leftovers, make_test_ca


@dataclass
class Rig:
    """One test's field: the shipped broker, fresh keys, the desk simulator and a work directory."""

    workdir: Path
    broker: ShippedBroker
    keys: Keys
    desk: DeskSimulator

    def secrets(self) -> list[str]:
        """Every secret of the rig: keys and broker passwords."""
        return [*self.keys.all(), *self.broker.passwords.values()]


@pytest.fixture(scope="session")
def rig_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a broker certificate for localhost (config/mosquitto/make-test-ca.sh)."""
    return make_test_ca(tmp_path_factory.mktemp("rig-ca"))


@pytest.fixture(scope="session")
def fault_fs(tmp_path_factory: pytest.TempPathFactory) -> FaultFs:
    """The storage-fault library (tests/fault_fs.c), built once per session (per xdist worker)."""
    return FaultFs.build(tmp_path_factory.mktemp("fault-fs"))


@contextmanager
def open_rig(workdir: Path, ca: Path) -> Iterator[Rig]:
    """Start a rig in ``workdir``; stops the desk and the broker at the end."""
    keys = Keys(workdir / "keys")
    broker = ShippedBroker(workdir / "mosquitto", ca).start()
    desk = DeskSimulator(port=0, seed=1, credentials=DeskCredentials(webhook_secret=keys.webhook)).start()
    try:
        yield Rig(workdir, broker, keys, desk)
    finally:
        kill_leftovers(workdir)
        desk.stop()
        broker.stop()


@pytest.fixture
def rig(tmp_path: Path, rig_ca: Path) -> Iterator[Rig]:
    """A fresh rig per test: nothing is shared between tests but the CA."""
    with open_rig(tmp_path, rig_ca) as r:
        yield r


@pytest.fixture(scope="module")
def module_rig(tmp_path_factory: pytest.TempPathFactory, rig_ca: Path) -> Iterator[Rig]:
    """One rig for a module whose tests all look at one expensive run."""
    with open_rig(tmp_path_factory.mktemp("rig"), rig_ca) as r:
        yield r
