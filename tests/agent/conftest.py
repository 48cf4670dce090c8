"""Fixtures of the agent tests."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from pdm_common.logs import configure_logging


@pytest.fixture
def agent_log() -> Iterator[io.StringIO]:
    """The log lines the agent writes during the test (logging is process-wide: set here, reset after)."""
    buf = io.StringIO()
    configure_logging(level="info", fmt="kv", stream=buf)
    try:
        yield buf
    finally:
        configure_logging()
