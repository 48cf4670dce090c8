"""edge-agent install / upgrade / uninstall into a temporary root (no systemctl)."""

from __future__ import annotations

import argparse
import os
import shutil
import stat
from pathlib import Path

import pytest

from edge_agent.install import Layout, MakeDir, Run, Step, WriteFile, add_parser, install_plan, uninstall_plan

REPO = Path(__file__).resolve().parents[2]
LAYOUT = Layout()

pytestmark = pytest.mark.skipif(shutil.which("systemd-sysusers") is None,
                                reason="systemd-sysusers creates the service user; not installed here")


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _install(root: Path, *extra: str) -> None:
    assert _cli("install", "--root", str(root), "--no-systemctl", "--bin-dir", "/opt/venv/bin", *extra) == 0


def test_install_creates_user_files_and_permissions(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    root = tmp_path / "root"
    _install(root, "--mqtt-password-file", str(password))

    assert "pdm-edge:" in (root / "etc/passwd").read_text()
    unit = (root / LAYOUT.unit).read_text()
    assert "ExecStart=/opt/venv/bin/edge-agent run --config /etc/pdm-edge/edge-agent.toml" in unit
    assert (root / LAYOUT.config).read_bytes() == (REPO / "config/edge-agent.example.toml").read_bytes()
    assert (root / LAYOUT.mqtt_password).read_text() == "s3cret\n"
    assert "s3cret" not in unit
    assert _mode(root / LAYOUT.config) == 0o640
    assert _mode(root / LAYOUT.credentials) == 0o700
    assert _mode(root / LAYOUT.mqtt_password) == 0o600
    assert _mode(root / LAYOUT.state_dir) == 0o750
    assert _mode(root / LAYOUT.unit) == 0o644
    if os.geteuid() == 0:
        uid = next(int(line.split(":")[2]) for line in (root / "etc/passwd").read_text().splitlines()
                   if line.startswith("pdm-edge:"))
        assert (root / LAYOUT.state_dir).stat().st_uid == uid
        assert (root / LAYOUT.config).stat().st_gid != 0
        assert (root / LAYOUT.mqtt_password).stat().st_uid == 0


def test_upgrade_keeps_config_credentials_and_state(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(root)
    (root / LAYOUT.config).write_text('gateway = "gw-99"\n')
    (root / LAYOUT.mqtt_password).write_text("kept")
    (root / LAYOUT.state_dir / "checkpoints").mkdir()
    (root / LAYOUT.state_dir / "checkpoints/hp-1.ckpt").write_bytes(b"model")
    (root / LAYOUT.state_dir / "outbox.sqlite3").write_bytes(b"queue")
    uid_before = (root / "etc/passwd").read_text()

    _install(root)

    assert (root / LAYOUT.config).read_text() == 'gateway = "gw-99"\n'
    assert (root / LAYOUT.mqtt_password).read_text() == "kept"
    assert (root / LAYOUT.state_dir / "checkpoints/hp-1.ckpt").read_bytes() == b"model"
    assert (root / LAYOUT.state_dir / "outbox.sqlite3").read_bytes() == b"queue"
    assert (root / LAYOUT.example).is_file()
    assert (root / "etc/passwd").read_text() == uid_before, "the user keeps its uid"


def test_uninstall_keeps_data_unless_purged(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _install(root)
    (root / LAYOUT.state_dir / "outbox.sqlite3").write_bytes(b"queue")

    assert _cli("uninstall", "--root", str(root), "--no-systemctl") == 0
    assert not (root / LAYOUT.unit).exists()
    assert (root / LAYOUT.state_dir / "outbox.sqlite3").exists()
    assert (root / LAYOUT.config).exists()

    assert _cli("uninstall", "--root", str(root), "--no-systemctl", "--purge") == 0
    assert not (root / LAYOUT.state_dir).exists()
    assert not (root / LAYOUT.config).exists() and not (root / LAYOUT.credentials).exists()


def test_missing_source_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("install", "--root", str(tmp_path), "--no-systemctl", "--source", str(tmp_path / "nope")) == 1
    assert "--source" in capsys.readouterr().err


def test_plan_enables_unit_only_with_systemctl() -> None:
    def plan(*, systemctl: bool, root_is_host: bool) -> list[Step]:
        return install_plan(unit_text="ExecStart=/opt/pdm-edge/bin/edge-agent run", example_config=b"",
                            bin_dir=Path("/b"), systemctl=systemctl, root_is_host=root_is_host)

    host = plan(systemctl=True, root_is_host=True)
    runs = [s.argv for s in host if isinstance(s, Run)]
    assert ("systemctl", "enable", "pdm-edge-agent.service") in runs
    assert ("systemctl", "try-restart", "pdm-edge-agent.service") in runs
    image = plan(systemctl=True, root_is_host=False)
    assert [s.argv for s in image if isinstance(s, Run) and s.argv[0] == "systemctl"] == [
        ("systemctl", "--root={root}", "enable", "pdm-edge-agent.service")]
    offline = plan(systemctl=False, root_is_host=True)
    assert all(s.argv[0] != "systemctl" for s in offline if isinstance(s, Run))
    secrets = [s for s in offline if isinstance(s, (WriteFile, MakeDir)) and "credentials" in str(s.path)]
    assert all(s.mode is not None and s.mode & 0o077 == 0 for s in secrets)
    assert uninstall_plan(purge=False, systemctl=True, root_is_host=True)[0] == Run(
        ("systemctl", "disable", "--now", "pdm-edge-agent.service"))
