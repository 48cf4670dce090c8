"""Each console script answers --help and --version without touching a broker or a config file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pdm_common import __version__

MODULES = {"edge-agent": "edge_agent.cli", "cloud-bridge": "cloud_bridge.cli", "pdm-sim": "simulators.cli"}


@pytest.mark.parametrize("script", sorted(MODULES))
def test_help_and_version(script: str) -> None:
    module = MODULES[script]
    version = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert version.returncode == 0
    assert version.stdout.strip() == f"{script} {__version__}"
    helped = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert helped.returncode == 0
    assert f"usage: {script}" in helped.stdout
