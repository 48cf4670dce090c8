"""The shipped systemd units: `systemd-analyze verify` clean and security exposure <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.install import render_unit

REPO = Path(__file__).resolve().parents[2]
UNITS = ["pdm-edge-agent.service", "pdm-cloud-bridge.service"]
MAX_EXPOSURE = 2.0
"""Issue 7: exposure <= 2.0 of 10. `--threshold` takes the same scale times ten (0..100)."""

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                       reason="systemd-analyze is not installed (apt-get install systemd)"),
]


@pytest.fixture(params=UNITS)
def unit(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The unit as installed: ExecStart pointing at this venv's console scripts (verify checks they exist)."""
    name: str = request.param
    path = tmp_path / name
    path.write_text(render_unit((REPO / "systemd" / name).read_text(), Path(sys.executable).parent))
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def test_verify_is_clean(unit: Path) -> None:
    result = _analyze("verify", "--man=no", str(unit))
    complaints = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_security_exposure_within_bound(unit: Path) -> None:
    result = _analyze("security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize("name", UNITS)
def test_units_hold_no_secrets_and_notify(name: str) -> None:
    text = (REPO / "systemd" / name).read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "LoadCredential=" in text
    assert not re.search(r"(?im)^Environment=.*(password|token|secret)=", text)
