"""Fixtures of the desk-simulator tests: one simulator per module and a fresh client per test.

A module may set ``DESK_SEED`` (the simulator's random seed) and ``DESK_AUTH`` (httpx auth of the
client) at module level.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.desk.server import DeskSimulator


@pytest.fixture(scope="module")
def sim(request: pytest.FixtureRequest) -> Iterator[DeskSimulator]:
    """The module's desk simulator."""
    with DeskSimulator(seed=getattr(request.module, "DESK_SEED", 0)) as server:
        yield server


@pytest.fixture
def client(sim: DeskSimulator, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An HTTP client on a simulator that forgot everything earlier tests sent."""
    sim.reset()
    with httpx.Client(base_url=sim.url, timeout=5.0, auth=getattr(request.module, "DESK_AUTH", None)) as http:
        yield http
