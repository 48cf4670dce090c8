"""The gateway Debian package for tests: built once per source digest (packaging/build_deb.py),
installed into throwaway roots with dpkg's own ``--root`` and chroot-less maintainer scripts.

What keeps this cheap: build_deb.py caches the third-party environment per lock, so a changed source
tree rebuilds in seconds; the packages of the last few digests are kept (older ones deleted); dpkg runs
with ``--force-unsafe-io`` (no fsync per file: a throwaway root needs no crash safety); and a root with
the package installed is cloned (:meth:`Root.clone`) instead of installing again.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.debian import CACHE

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build_deb.py"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
_BUILD_TIMEOUT_S = 900.0
_DPKG_TIMEOUT_S = 300.0


def _load_builder() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_deb", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_python() -> Path:
    """An interpreter with the project's build backend (build_deb.py's cached environment)."""
    builder = _load_builder()
    python: Path = builder.build_python(quiet=True)  # type: ignore[attr-defined]
    return python


ARCHES = ("amd64", "arm64")
KEEP_BUILDS = 3
"""Source digests whose packages stay cached (the newest; several checkouts may share the cache)."""
_IN_USE_S = 3600.0


def build() -> dict[str, Path]:
    """The packages of both architectures built from this checkout, reused while the sources are unchanged.

    One build_deb.py run makes both (they share our own wheel and the cached third-party environments);
    the result is cached under ``~/.cache/pdm-edge/deb/<source digest>/``.
    """
    builder = _load_builder()
    digest: str = builder.source_digest()  # type: ignore[attr-defined]
    out = CACHE.parent / "deb" / digest
    if out.is_dir():
        os.utime(out)
    if not all(sorted(out.glob(f"*_{arch}.deb")) for arch in ARCHES):
        partial = out.with_name(out.name + f".{os.getpid()}.partial")
        arches = [arg for arch in ARCHES for arg in ("--arch", arch)]
        result = subprocess.run([sys.executable, str(BUILD), *arches, "--out", str(partial), "--fast", "--quiet"],
                                capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False)
        if result.returncode != 0:
            raise AssertionError(f"build_deb.py failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        out.mkdir(parents=True, exist_ok=True)
        for deb in partial.glob("*.deb"):
            deb.replace(out / deb.name)
        shutil.rmtree(partial, ignore_errors=True)
        _prune(out)
    return {arch: sorted(out.glob(f"*_{arch}.deb"))[0] for arch in ARCHES}


def _prune(current: Path) -> None:
    """Delete the packages of older digests beyond :data:`KEEP_BUILDS` that nobody used within the hour."""
    others = sorted((p for p in current.parent.iterdir() if p.is_dir() and p != current and ".partial" not in p.name),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[KEEP_BUILDS - 1:]:
        if time.time() - stale.stat().st_mtime > _IN_USE_S:
            shutil.rmtree(stale, ignore_errors=True)


@dataclass(frozen=True)
class Root:
    """A throwaway root with its own dpkg database."""

    path: Path

    @classmethod
    def create(cls, path: Path) -> Root:
        """An empty root: dpkg's admin directory, and what the package depends on that tests need.

        The package Depends on systemd; ``--force-depends`` installs it without, so the host's unit
        directory and ``kill`` (ExecReload=) are copied in for ``systemd-analyze verify --root``.
        """
        for sub in ("var/lib/dpkg/updates", "var/lib/dpkg/info", "etc", "usr/bin", "usr/lib/systemd"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        (path / "var/lib/dpkg/status").touch()
        shutil.copytree("/usr/lib/systemd/system", path / "usr/lib/systemd/system", symlinks=True,
                        dirs_exist_ok=True)
        kill = shutil.which("kill") or "/usr/bin/kill"
        shutil.copy(kill, path / "usr/bin/kill")
        return cls(path)

    def clone(self, path: Path) -> Root:
        """A copy of this root at ``path``, as if the same packages had been installed there.

        ``opt/`` (the bundled environment, 95 % of the bytes) is hard-linked: dpkg never writes an
        installed file in place (it unpacks ``<file>.dpkg-new`` and renames it over), so an upgrade,
        remove or purge of the clone leaves this root's files alone; tests must not write there either.
        Everything else (configuration, dpkg's database, state) is copied.
        """
        path.mkdir(parents=True)
        entries = sorted(str(e) for e in self.path.iterdir() if e.name != "opt")
        # GNU cp: -a keeps owners and modes (the package's pdm-edge files), -l links instead of copying.
        subprocess.run(["cp", "-a", *entries, str(path)], check=True, timeout=_DPKG_TIMEOUT_S)
        if (self.path / "opt").is_dir():
            subprocess.run(["cp", "-al", str(self.path / "opt"), str(path)], check=True, timeout=_DPKG_TIMEOUT_S)
        return Root(path)

    def dpkg(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run dpkg on this root (maintainer scripts chroot-less, with DPKG_ROOT set by dpkg).

        ``--force-unsafe-io``: no fsync of each unpacked file; a throwaway root needs no crash safety,
        and ten thousand fsyncs cost seconds on a shared disk.
        """
        return subprocess.run(["dpkg", f"--root={self.path}", "--force-script-chrootless", "--force-depends",
                               "--force-confdef", "--force-confold", "--force-unsafe-io", "--log=/dev/null", *args],
                              capture_output=True, text=True, timeout=_DPKG_TIMEOUT_S, check=False)

    def python(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the package's own interpreter (its environment, Debian's python3.11)."""
        return subprocess.run([str(self.path / "opt/pdm-edge/bin/python3"), *args], capture_output=True, text=True,
                              timeout=120, check=False, cwd=cwd or self.path)

    def ids(self, table: str, name: str) -> int:
        """Numeric id of ``name`` in this root's passwd or group file."""
        for line in (self.path / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise KeyError(name)
