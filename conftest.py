"""Root pytest configuration: shared by the test suite and the doctests in the packages."""

from __future__ import annotations

import sys

import pytest

from pdm_common.logs import configure_logging


def pytest_configure(config: pytest.Config) -> None:
    """Structured logs go to stderr, so doctests and tests that read stdout see only their output."""
    configure_logging(level="info", stream=sys.stderr)
