"""The gateway Debian package: built, installed into a throwaway root, upgraded, removed, purged.

``dpkg --root`` with chroot-less maintainer scripts (``DPKG_ROOT``) is the closest thing to a real
install that runs on this CI machine without a chroot or a container: the same dpkg, the same
conffile handling, the same postinst/prerm/postrm, systemd-sysusers and systemctl --root.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import PackagedGateway
from tests.deploy.package import HOST_ARCH, Root, build

pytestmark = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                       reason="dpkg and dpkg-deb build and install the package (Debian)"),
    pytest.mark.skipif(not HOST_ARCH, reason="the package is built for amd64 and arm64 hosts"),
    pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(),
                       reason="the package runs on Debian's /usr/bin/python3.11 (apt-get install python3.11)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root installs files owned by root and pdm-edge"),
]

UNIT = "pdm-edge-agent.service"
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="session")
def debs() -> dict[str, Path]:
    """The packages of both architectures (built once per source digest)."""
    return build()


@pytest.fixture(scope="session")
def deb(debs: dict[str, Path]) -> Path:
    """The package for this machine's architecture."""
    return debs[HOST_ARCH]


@pytest.fixture(scope="module")
def root(packaged_gateway: PackagedGateway) -> Root:
    """A throwaway root with the package installed, shared by the tests that only look at it."""
    return packaged_gateway.root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_installs_agent_unit_config_user_and_mosquitto_drop_in(root: Root) -> None:
    base = root.path
    uid, gid = root.ids("passwd", "pdm-edge"), root.ids("group", "pdm-edge")
    assert (base / "opt/pdm-edge/bin/edge-agent").stat().st_mode & stat.S_IXUSR
    assert (base / "usr/lib/systemd/system" / UNIT).is_file()
    assert (base / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink(), "enabled on install"
    config = base / "etc/pdm-edge/edge-agent.toml"
    assert (config.stat().st_uid, config.stat().st_gid, _mode(config)) == (0, gid, 0o640)
    assert _mode(base / "etc/pdm-edge/credentials/edge-agent") == 0o700
    state = base / "var/lib/pdm-edge-agent"
    assert (state.stat().st_uid, _mode(state)) == (uid, 0o750)
    assert (base / "etc/mosquitto/conf.d/pdm-edge.conf").is_file() and (base / "etc/mosquitto/pdm/acl").is_file()
    mosquitto = [line for line in (base / "etc/group").read_text().splitlines() if line.startswith("mosquitto:")]
    if mosquitto:  # Mosquitto reads the ACL as its own group
        assert (base / "etc/mosquitto/pdm/acl").stat().st_gid == int(mosquitto[0].split(":")[2])
    conffiles = root.dpkg("--status", "pdm-edge-agent").stdout
    for conffile in ("/etc/pdm-edge/edge-agent.toml", "/etc/mosquitto/conf.d/pdm-edge.conf", "/etc/mosquitto/pdm/acl"):
        assert conffile in conffiles


def test_installed_agent_runs_on_debians_python_with_gateway_dependencies_only(root: Root) -> None:
    version = root.python(str(root.path / "opt/pdm-edge/bin/edge-agent"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("edge-agent "), version.stderr
    probe = root.python("-c", "import sys, edge_agent.app, edge_agent.doctor; "
                        "print(sys.prefix, sorted(m for m in ('httpx', 'matplotlib', 'psycopg', 'amqtt') "
                        "if m in sys.modules or __import__('importlib.util').util.find_spec(m)))")
    assert probe.returncode == 0, probe.stderr
    prefix, bridge_only = probe.stdout.strip().split(" ", 1)
    assert prefix == str(root.path / "opt/pdm-edge") and bridge_only == "[]"
    site = root.path / "opt/pdm-edge/lib/python3.11/site-packages"
    for module in ("numpy/__init__", "pydantic/main", "edge_agent/app", "pdm_common/contracts"):
        package, name = module.rsplit("/", 1)
        assert (site / package / "__pycache__" / f"{name}.cpython-311.pyc").is_file(), f"{module} byte-compiled"
    check = root.python(str(root.path / "opt/pdm-edge/bin/edge-agent"), "check-config",
                        "--config", str(root.path / "etc/pdm-edge/edge-agent.toml"))
    assert check.returncode == 2 and "secret_mqtt-password" in check.stderr, check.stderr


def test_installed_unit_verifies_and_is_hardened(root: Root) -> None:
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root.path}", "--man=no", UNIT],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root.path}",
                               f"--threshold={round(MAX_EXPOSURE * 10)}", "--no-pager", UNIT],
                              capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match and float(match.group(1)) <= MAX_EXPOSURE, security.stdout[-1500:]


def test_upgrade_keeps_data_remove_keeps_data_and_purge_deletes_it(deb: Path, packaged_gateway: PackagedGateway
                                                                   ) -> None:
    root = packaged_gateway.clone()
    base = root.path
    config = base / "etc/pdm-edge/edge-agent.toml"
    edited = config.read_text().replace('site = "oslo-north"', 'site = "bergen-1"')
    config.write_text(edited)
    (base / "etc/pdm-edge/credentials/edge-agent/mqtt-password").write_text("kept")
    (base / "var/lib/pdm-edge-agent/checkpoints").mkdir()
    (base / "var/lib/pdm-edge-agent/checkpoints/hp-1.ckpt").write_bytes(b"model")
    (base / "var/lib/pdm-edge-agent/outbox.sqlite3").write_bytes(b"queue")
    (base / "etc/systemd/system/multi-user.target.wants" / UNIT).unlink()  # the operator disabled it
    users = (base / "etc/passwd").read_text()

    # Installing the package again is dpkg's upgrade path (prerm upgrade, unpack, postinst configure
    # with the old version): the same maintainer scripts and conffile handling as a new version.
    upgrade = root.dpkg("-i", str(deb))

    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "Preparing to unpack" in upgrade.stdout and "over (" in upgrade.stdout
    assert config.read_text() == edited
    assert (base / "etc/pdm-edge/credentials/edge-agent/mqtt-password").read_text() == "kept"
    assert (base / "var/lib/pdm-edge-agent/checkpoints/hp-1.ckpt").read_bytes() == b"model"
    assert (base / "var/lib/pdm-edge-agent/outbox.sqlite3").read_bytes() == b"queue"
    assert (base / "etc/passwd").read_text() == users, "the user keeps its uid"
    assert not (base / "etc/systemd/system/multi-user.target.wants" / UNIT).exists(), "a disable is respected"

    removed = root.dpkg("--remove", "pdm-edge-agent")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (base / "opt/pdm-edge").exists() and not (base / "usr/lib/systemd/system" / UNIT).exists()
    assert not (base / "etc/systemd/system/multi-user.target.wants" / UNIT).exists()
    assert (base / "var/lib/pdm-edge-agent/outbox.sqlite3").exists()
    assert (base / "etc/pdm-edge/edge-agent.toml").exists()
    assert (base / "etc/pdm-edge/credentials/edge-agent/mqtt-password").exists()

    purged = root.dpkg("--purge", "pdm-edge-agent")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for gone in ("var/lib/pdm-edge-agent", "var/log/pdm-edge-agent", "etc/pdm-edge", "etc/mosquitto/pdm/acl",
                 "etc/mosquitto/conf.d/pdm-edge.conf"):
        assert not (base / gone).exists(), gone
    assert "pdm-edge:" in (base / "etc/passwd").read_text(), "Debian keeps system users"


def test_installer_in_the_package_finds_units_in_the_wheels_data(root: Root, tmp_path: Path) -> None:
    target = tmp_path / "image"
    result = root.python("-m", "edge_agent.cli", "install", "--root", str(target), "--no-systemctl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    unit = (target / "etc/systemd/system" / UNIT).read_text()
    assert f"ExecStart={root.path}/opt/pdm-edge/bin/edge-agent run" in unit
    assert (root.path / "opt/pdm-edge/share/pdm-edge/systemd" / UNIT).is_file()


def test_arm64_package_carries_aarch64_binaries(debs: dict[str, Path]) -> None:
    deb = debs["arm64"]
    fields = subprocess.run(["dpkg-deb", "--field", str(deb), "Architecture", "Installed-Size"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert "Architecture: arm64" in fields
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True, timeout=120)
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(listing.stdout)) as tar:
        member = next(m for m in tar.getmembers() if re.search(r"numpy/_core/_multiarray_umath.*\.so$", m.name))
        handle = tar.extractfile(member)
        assert handle is not None
        header = handle.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, "EM_AARCH64"


def test_sdist_carries_units_examples_and_the_packaging(tmp_path: Path) -> None:
    import tarfile

    from tests.deploy.package import REPO, build_python

    # What `python -m build --sdist` does, minus making a fresh isolated environment each time: the
    # build backend pyproject.toml names, from build_deb.py's cached environment of it.
    subprocess.run([str(build_python()), "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_sdist(sys.argv[1])", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    (sdist,) = tmp_path.glob("pdm_edge-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("systemd/pdm-edge-agent.service", "systemd/pdm-cloud-bridge.service",
                   "config/edge-agent.example.toml", "config/cloud-bridge.example.toml", "config/assets.example.toml",
                   "config/fault-actions.toml", "config/mosquitto/acl", "config/mosquitto/pdm-edge.conf",
                   "config/mosquitto/bridge-to-cloud.conf", "config/kinds.example.toml", "packaging/build_deb.py",
                   "packaging/gateway-requirements.txt", "ops/prometheus/pdm-rules.yml"):
        assert needed in names, needed
