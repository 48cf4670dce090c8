"""Build the gateway's Debian package ``pdm-edge-agent`` (amd64 or arm64) with pip and dpkg-deb.

    python packaging/build_deb.py --arch arm64 --out dist/           # for a Raspberry Pi
    python packaging/build_deb.py --arch amd64 --out dist/ --fast    # gzip -1: for tests

Why this shape: the agent needs numpy, river (and through it scipy), pydantic-core and
paho-mqtt at versions Debian bookworm does not ship, so the package bundles them in a virtual
environment under ``/opt/pdm-edge`` on Debian's own ``python3.11``. dh-virtualenv builds the same
thing but only natively (an arm64 package needs an arm64 build host or an emulated chroot); pip can
fetch the manylinux wheels of any architecture (``--platform``), so one amd64 CI machine builds both
architectures in about a minute, with dpkg-deb (no debhelper, no fakeroot: ``--root-owner-group``).

Layout of the package::

    /opt/pdm-edge/                          the environment: pyvenv.cfg (home = /usr/bin), bin/python3 ->
                                            /usr/bin/python3.11, bin/edge-agent, lib/python3.11/site-packages
                                            (byte-compiled at build time), share/pdm-edge/ (units, examples)
    /usr/lib/systemd/system/pdm-edge-agent.service
    /usr/lib/sysusers.d/pdm-edge.conf       the system user pdm-edge (systemd-sysusers)
    /etc/pdm-edge/edge-agent.toml           conffile: the example; dpkg keeps local edits on upgrade
    /etc/mosquitto/conf.d/pdm-edge.conf     conffile: the Mosquitto drop-in (config/mosquitto)
    /etc/mosquitto/pdm/acl                  conffile: the site-pattern ACL
    /usr/share/doc/pdm-edge-agent/          examples (the bridge to the cloud, make-test-ca.sh, vendor kinds), copyright

The maintainer scripts (``packaging/debian/``) create the user and the directories, enable the unit
(without starting it: it needs a configured site first) and restart it on upgrade; ``remove`` keeps
config, credentials and state; ``purge`` deletes them. They honour ``DPKG_ROOT``, so the package
installs into a throwaway root with ``dpkg --root=DIR --force-script-chrootless`` (tests/deploy).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge_agent.install import SYSUSERS  # noqa: E402 - the checkout's own modules, after its path
from pdm_common import __version__  # noqa: E402

PACKAGE = "pdm-edge-agent"
PREFIX = Path("opt/pdm-edge")
PYTHON = "python3.11"
"""Debian bookworm's interpreter; the bundled wheels are built for its ABI (cp311)."""
PYTHON_VERSION = "3.11.2"
"""Debian bookworm's python3.11, written into pyvenv.cfg."""
GLIBC_MINOR = 36
"""bookworm's glibc 2.36: wheels tagged manylinux_2_17 .. manylinux_2_36 run on it."""
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
EXTRAS = "doctor"
"""The agent plus the doctor's certificate dates; the bridge and the simulators stay out."""
SCRIPTS = {"edge-agent": "edge_agent.cli"}
"""Console scripts of the gateway package (cloud-bridge and pdm-sim need extras it does not carry)."""
_PIP_TIMEOUT_S = 900


def _run(argv: Sequence[str | Path], **kwargs: object) -> None:
    started = time.monotonic()
    print("+", " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True, timeout=_PIP_TIMEOUT_S, **kwargs)  # type: ignore[call-overload]
    print(f"  ({time.monotonic() - started:.1f} s)", flush=True)


def _platforms(machine: str) -> list[str]:
    """pip ``--platform`` tags bookworm's glibc accepts, newest first (PEP 600; manylinux2014 = 2_17)."""
    return [*(f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)), f"manylinux2014_{machine}"]


def version() -> str:
    """The project version (pdm_common.__version__) as a Debian version."""
    return __version__


def _wheels(work: Path, quiet: bool) -> Path:
    """Our wheel and wheels of every pure-Python dependency published only as an sdist (e.g. sdnotify)."""
    house = work / "wheelhouse"
    flags = ["--quiet"] if quiet else []
    _run([sys.executable, "-m", "pip", "wheel", *flags, "--wheel-dir", house, f"{REPO}[{EXTRAS}]"])
    return house


def _site_packages(root: Path) -> Path:
    return root / PREFIX / "lib" / PYTHON / "site-packages"


def _install(stage: Path, house: Path, machine: str, quiet: bool) -> None:
    """pip-install the agent and its dependencies for ``machine`` into the staged environment."""
    site = _site_packages(stage)
    platforms = [arg for tag in _platforms(machine) for arg in ("--platform", tag)]
    flags = ["--quiet"] if quiet else []
    _run([sys.executable, "-m", "pip", "install", *flags, "--no-compile", "--target", site, *platforms,
          "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:",
          "--find-links", house, f"pdm-edge[{EXTRAS}]=={version()}"])
    # pip --target puts data files and scripts inside the target: move the data to the prefix, and
    # write the scripts ourselves (pip's carry the build machine's interpreter in their #! line).
    shutil.move(site / "share", stage / PREFIX / "share")
    shutil.rmtree(site / "bin", ignore_errors=True)
    for tests in [p for p in site.rglob("tests") if p.is_dir() and not p.relative_to(site).parts[0].startswith(
            ("pdm_common", "edge_agent", "cloud_bridge", "simulators"))]:
        shutil.rmtree(tests, ignore_errors=True)  # upstream test suites: megabytes nobody runs on a gateway


def _environment(stage: Path, *, compile_all: bool = True) -> None:
    """pyvenv.cfg, the interpreter link and the console scripts of /opt/pdm-edge."""
    env = stage / PREFIX
    (env / "bin").mkdir(parents=True, exist_ok=True)
    (env / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\n"
                                    f"version = {PYTHON_VERSION}\n", encoding="utf-8")
    (env / "bin" / "python3").symlink_to(f"/usr/bin/{PYTHON}")
    (env / "bin" / "python").symlink_to("python3")
    for name, module in SCRIPTS.items():
        script = env / "bin" / name
        script.write_text(f"#!/{PREFIX}/bin/python3\nimport sys\n\nfrom {module} import main\n\n"
                          "sys.exit(main())\n", encoding="utf-8")
        script.chmod(0o755)
    # Byte-compile now: the unit's read-only /opt (ProtectSystem=strict) would otherwise make every
    # start compile numpy & co. in memory. unchecked-hash: valid whatever mtime dpkg gives the files.
    if not compile_all:
        return
    site = _site_packages(stage)
    started = time.monotonic()
    ok = compileall.compile_dir(str(site), quiet=1, workers=0, ddir=f"/{PREFIX}/lib/{PYTHON}/site-packages",
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise SystemExit("byte-compiling the environment failed")
    print(f"byte-compiled {site} ({time.monotonic() - started:.1f} s)", flush=True)


def _files(stage: Path) -> None:
    """Unit, sysusers, conffiles and docs from the repository."""
    def put(source: Path, target: str, mode: int = 0o644) -> None:
        path = stage / target
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        path.chmod(mode)

    put(REPO / "systemd" / "pdm-edge-agent.service", "usr/lib/systemd/system/pdm-edge-agent.service")
    sysusers = stage / "usr/lib/sysusers.d/pdm-edge.conf"
    sysusers.parent.mkdir(parents=True, exist_ok=True)
    sysusers.write_text(SYSUSERS, encoding="utf-8")  # the same user as `edge-agent install` creates
    put(REPO / "config" / "edge-agent.example.toml", "etc/pdm-edge/edge-agent.toml", 0o640)
    put(REPO / "config" / "mosquitto" / "pdm-edge.conf", "etc/mosquitto/conf.d/pdm-edge.conf")
    put(REPO / "config" / "mosquitto" / "acl", "etc/mosquitto/pdm/acl", 0o640)
    docs = f"usr/share/doc/{PACKAGE}"
    put(REPO / "config" / "edge-agent.example.toml", f"{docs}/examples/edge-agent.example.toml")
    put(REPO / "config" / "kinds.example.toml", f"{docs}/examples/kinds.example.toml")
    put(REPO / "config" / "mosquitto" / "bridge-to-cloud.conf", f"{docs}/examples/mosquitto-bridge-to-cloud.conf")
    put(REPO / "config" / "mosquitto" / "make-test-ca.sh", f"{docs}/examples/make-test-ca.sh", 0o755)
    put(REPO / "packaging" / "debian" / "copyright", f"{docs}/copyright")


def _installed_size_kib(stage: Path) -> int:
    total = 0
    for path in stage.rglob("*"):
        if path.is_file() and not path.is_symlink() and "DEBIAN" not in path.relative_to(stage).parts[:1]:
            total += path.stat().st_size
    return (total + 1023) // 1024


def _control(stage: Path, arch: str, pkg_version: str) -> None:
    debian = stage / "DEBIAN"
    debian.mkdir(exist_ok=True)
    template = (REPO / "packaging" / "debian" / "control").read_text(encoding="utf-8")
    (debian / "control").write_text(template.format(version=pkg_version, arch=arch,
                                                    installed_size=_installed_size_kib(stage)), encoding="utf-8")
    conffiles = ["/etc/pdm-edge/edge-agent.toml", "/etc/mosquitto/conf.d/pdm-edge.conf", "/etc/mosquitto/pdm/acl"]
    (debian / "conffiles").write_text("".join(f"{c}\n" for c in conffiles), encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        target = debian / script
        shutil.copyfile(REPO / "packaging" / "debian" / script, target)
        target.chmod(0o755)


def stage(arch: str, work: Path, *, quiet: bool = False, compile_all: bool = True) -> Path:
    """Build the package tree for ``arch`` below ``work``; returns it (DEBIAN/ written by :func:`pack`).

    The wheelhouse in ``work`` is built once and shared by every architecture staged there.
    """
    root = work / f"stage-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    house = work / "wheelhouse"
    _install(root, house if house.is_dir() else _wheels(work, quiet), ARCHES[arch], quiet)
    _environment(root, compile_all=compile_all)
    _files(root)
    return root


def pack(tree: Path, arch: str, out: Path, *, pkg_version: str | None = None, fast: bool = False) -> Path:
    """Write DEBIAN/ and build ``out/pdm-edge-agent_<version>_<arch>.deb`` from ``tree``."""
    pkg_version = pkg_version or version()
    _control(tree, arch, pkg_version)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{pkg_version}_{arch}.deb"
    compression = ["-Zgzip", "-z1"] if fast else ["-Zxz", "-z6"]
    _run(["dpkg-deb", "--root-owner-group", *compression, "--build", tree, deb], stdout=subprocess.DEVNULL)
    return deb


def source_digest() -> str:
    """A digest of everything that goes into the package, to reuse a build of the same sources."""
    digest = hashlib.sha256()
    roots = [REPO / d for d in ("pdm_common", "edge_agent", "cloud_bridge", "simulators", "systemd", "config",
                                "packaging")]
    files = sorted(p for r in roots for p in r.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [*files, REPO / "pyproject.toml"]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build one package per ``--arch``."""
    parser = argparse.ArgumentParser(description="Build the pdm-edge-agent Debian package")
    parser.add_argument("--arch", action="append", choices=sorted(ARCHES), help="amd64 and/or arm64 (default both)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output directory (default dist/)")
    parser.add_argument("--version", dest="pkg_version", help="Debian version (default: the project version)")
    parser.add_argument("--fast", action="store_true",
                        help="tests: gzip -1 instead of xz, and no byte-compiling (17 s of a 64 s two-arch build)")
    parser.add_argument("--quiet", action="store_true", help="no pip progress")
    args = parser.parse_args(argv)
    if shutil.which("dpkg-deb") is None:
        print("build_deb: dpkg-deb is needed (apt-get install dpkg)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pdm-deb-") as tmp:
        for arch in args.arch or sorted(ARCHES):
            tree = stage(arch, Path(tmp), quiet=args.quiet, compile_all=not args.fast)
            deb = pack(tree, arch, args.out, pkg_version=args.pkg_version, fast=args.fast)
            print(f"built {deb} ({deb.stat().st_size // 1024} KiB, installed {_installed_size_kib(tree)} KiB)")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
