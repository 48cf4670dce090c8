"""Files from Debian's own packages, for tests that must run on what Debian ships.

``debian_file("mosquitto", "etc/mosquitto/mosquitto.conf")`` is Debian's stock Mosquitto config,
``debian_file("prometheus", "usr/bin/promtool")`` the rule checker, taken from the .deb that
``apt-get download`` fetches (no install, no service started) and cached under
``$XDG_CACHE_HOME/pdm-edge/debian`` (default ``~/.cache``), so a machine fetches each package once.
When apt cannot fetch it (no network, not Debian) the caller skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

__all__ = ["CACHE", "DebianUnavailable", "debian_file"]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pdm-edge" / "debian"
_DOWNLOAD_TIMEOUT_S = 300.0


class DebianUnavailable(Exception):
    """The package cannot be fetched here; the message says why (for ``pytest.skip``)."""


def _deb(package: str) -> Path:
    folder = CACHE / package
    found = sorted(folder.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise DebianUnavailable(f"apt-get is not installed: cannot fetch Debian's {package} package")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package], cwd=folder,
                            capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S, check=False)
    found = sorted(folder.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not found:
        raise DebianUnavailable(f"apt-get download {package} failed (run apt-get update first?): "
                                f"{result.stderr.strip()[-300:]}")
    return found[-1]


def debian_file(package: str, member: str) -> Path:
    """``member`` (a path inside the package, no leading slash) extracted from Debian's ``package``.

    Raises:
        DebianUnavailable: apt cannot fetch the package, or it has no such file.
    """
    deb = _deb(package)
    target = CACHE / package / deb.stem / member
    if target.exists():
        return target
    if shutil.which("dpkg-deb") is None:
        raise DebianUnavailable("dpkg-deb is not installed: cannot unpack Debian packages")
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for entry in tar:
                if entry.name.lstrip("./") == member and entry.isfile():
                    source = tar.extractfile(entry)
                    assert source is not None
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_name(target.name + ".partial")
                    partial.write_bytes(source.read())
                    partial.chmod(entry.mode)
                    partial.replace(target)
                    break
    if not target.exists():
        raise DebianUnavailable(f"Debian's {package} ({deb.name}) has no {member}")
    return target
