"""Build the gateway's Debian package ``pdm-edge-agent`` (amd64 or arm64) with pip and dpkg-deb.

    python packaging/build_deb.py --arch arm64 --out dist/           # for a Raspberry Pi
    python packaging/build_deb.py --arch amd64 --out dist/ --fast    # zstd -1: for tests
    python packaging/build_deb.py --lock                             # re-resolve gateway-requirements.txt

Why this shape: the agent needs numpy, river (and through it scipy), pydantic-core and
paho-mqtt at versions Debian bookworm does not ship, so the package bundles them in a virtual
environment under ``/opt/pdm-edge`` on Debian's own ``python3.11``. dh-virtualenv builds the same
thing but only natively (an arm64 package needs an arm64 build host or an emulated chroot); pip can
fetch the manylinux wheels of any architecture (``--platform``), so one amd64 CI machine builds both
architectures, with dpkg-deb (no debhelper, no fakeroot: ``--root-owner-group``).

What goes in is pinned: ``packaging/gateway-requirements.txt`` (the lock) names every third-party
distribution with its version and the sha256 of its amd64 and arm64 wheels; pip installs exactly
those (``--require-hashes``), and the build checks that they satisfy every requirement of the agent
and of each other. Rebuilding is cheap: the third-party part of each architecture's environment
(installed, stripped of upstream test suites, byte-compiled) is built once per lock and kept under
``$XDG_CACHE_HOME/pdm-edge/deb-deps/<arch>/<lock digest>/``; a build hard-links it into the package
tree and adds only our own wheel (built once for both architectures, in a cached environment with
the build backend ``pyproject.toml`` names) and files. A cold build (empty cache) does everything.

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
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import Distribution, distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge_agent.install import SYSUSERS  # noqa: E402 - the checkout's own modules, after its path
from pdm_common import __version__  # noqa: E402

PACKAGE = "pdm-edge-agent"
PROJECT = "pdm-edge"
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
LOCK = REPO / "packaging" / "gateway-requirements.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pdm-edge"
DEPS_LAYOUT = 1
"""Bump when the layout of a cached third-party environment changes (it is part of the cache key)."""
KEEP_CACHED = 2
"""Cached third-party environments kept per kind (the newest; an older lock's are deleted)."""
OWN_PACKAGES = ("pdm_common", "edge_agent", "cloud_bridge", "simulators")
_PIP_TIMEOUT_S = 900
_IN_USE_S = 3600.0


def _run(argv: Sequence[str | Path], **kwargs: object) -> None:
    started = time.monotonic()
    print("+", " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True, timeout=_PIP_TIMEOUT_S, **kwargs)  # type: ignore[call-overload]
    print(f"  ({time.monotonic() - started:.1f} s)", flush=True)


def _platforms(machine: str) -> list[str]:
    """pip ``--platform`` tags bookworm's glibc accepts, newest first (PEP 600; manylinux2014 = 2_17)."""
    return [*(f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)), f"manylinux2014_{machine}"]


def _target(machine: str) -> list[str]:
    """pip options that choose wheels for bookworm's python3.11 on ``machine``."""
    platforms = [arg for tag in _platforms(machine) for arg in ("--platform", tag)]
    return [*platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp311",
            "--only-binary=:all:"]


def version() -> str:
    """The project version (pdm_common.__version__) as a Debian version."""
    return __version__


def _site_packages(root: Path) -> Path:
    return root / PREFIX / "lib" / PYTHON / "site-packages"


def _compile(site: Path, dirs: Iterable[Path]) -> None:
    """Byte-compile now: the unit's read-only /opt (ProtectSystem=strict) would otherwise make every start
    compile numpy & co. in memory. unchecked-hash: valid whatever mtime dpkg gives the files."""
    ddir = f"/{PREFIX}/lib/{PYTHON}/site-packages"
    for path in dirs:
        if not compileall.compile_dir(str(path), quiet=1, workers=0, ddir=f"{ddir}/{path.relative_to(site)}",
                                      invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH):
            raise SystemExit(f"byte-compiling {path} failed")


def _cached(kind: str, key: str, make: Callable[[Path], None]) -> Path:
    """``CACHE/<kind>/<key>``, made by ``make(partial_dir)`` when missing.

    The directory is made under a temporary name and renamed into place, so a concurrent build (another
    checkout on the same machine) never sees half of it; if two make it at once, the first rename wins.
    Of the other keys the newest ``KEEP_CACHED - 1`` stay, and any used within the hour (a concurrent
    build of another checkout may be linking from it).
    """
    base = CACHE / kind
    done = base / key
    if done.is_dir():
        os.utime(done)
        return done
    base.mkdir(parents=True, exist_ok=True)
    partial = base / f".{key}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    make(partial)
    try:
        partial.rename(done)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another build finished it first
    older = sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and p != done),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in older[KEEP_CACHED - 1:]:
        if time.time() - stale.stat().st_mtime > _IN_USE_S:
            shutil.rmtree(stale, ignore_errors=True)
    return done


def build_python(quiet: bool) -> Path:
    """An interpreter with the build backend ``pyproject.toml`` requires (a venv cached by those requirements)."""
    requires: list[str] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["build-system"][
        "requires"]
    key = hashlib.sha256(json.dumps([sys.version, requires]).encode()).hexdigest()[:16]

    def make(path: Path) -> None:
        venv.create(path, with_pip=True)
        flags = ["--quiet"] if quiet else []
        _run([path / "bin" / "python", "-m", "pip", "install", *flags, *requires])

    return _cached("deb-build", key, make) / "bin" / "python"


def _own(work: Path, quiet: bool) -> Path:
    """Our wheel installed once for both architectures (pure Python), byte-compiled: ``site/`` and ``share/``."""
    own = work / "own"
    house = work / "own-wheel"
    flags = ["--quiet"] if quiet else []
    # setuptools builds in the source tree and never deletes from build/lib: a module removed since the
    # last build would otherwise still ship.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    _run([build_python(quiet), "-m", "pip", "wheel", *flags, "--no-deps", "--no-build-isolation",
          "--wheel-dir", house, REPO])
    (wheel,) = house.glob("pdm_edge-*.whl")
    site = own / "site"
    _run([sys.executable, "-m", "pip", "install", *flags, "--no-deps", "--no-compile", "--target", site, wheel])
    # pip --target puts data files and scripts inside the target: the data go to the prefix, and the
    # scripts are written by _environment (pip's carry the build machine's interpreter in their #! line).
    shutil.move(site / "share", own / "share")
    shutil.rmtree(site / "bin", ignore_errors=True)
    _compile(site, [site / name for name in OWN_PACKAGES if (site / name).is_dir()])
    return own


def _deps(arch: str, quiet: bool) -> Path:
    """The locked third-party distributions for ``arch``, installed, stripped and byte-compiled (cached per lock)."""
    machine = ARCHES[arch]
    key = hashlib.sha256(LOCK.read_bytes() + f"{PYTHON_VERSION} {GLIBC_MINOR} {DEPS_LAYOUT}".encode()).hexdigest()

    def make(path: Path) -> None:
        site = path / "site-packages"
        flags = ["--quiet"] if quiet else []
        _run([sys.executable, "-m", "pip", "install", *flags, "--no-deps", "--no-compile", "--require-hashes",
              "--target", site, *_target(machine), "-r", LOCK])
        shutil.rmtree(site / "bin", ignore_errors=True)
        if (site / "share").exists():
            raise SystemExit(f"a locked distribution installs data files ({site / 'share'}): not handled")
        for tests in [p for p in site.rglob("tests") if p.is_dir()]:
            shutil.rmtree(tests, ignore_errors=True)  # upstream test suites: megabytes nobody runs on a gateway
        started = time.monotonic()
        _compile(site, [p for p in site.iterdir() if p.is_dir()])
        print(f"byte-compiled the {arch} dependencies ({time.monotonic() - started:.1f} s)", flush=True)

    return _cached(f"deb-deps/{arch}", key[:16], make) / "site-packages"


def _link_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` as hard links (a copy where the cache is on another file system)."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link, dirs_exist_ok=True)


def _marker_environment(machine: str) -> dict[str, str]:
    """PEP 508 marker values of bookworm's python3.11 on ``machine`` (not of the build machine)."""
    return {"implementation_name": "cpython", "implementation_version": PYTHON_VERSION, "os_name": "posix",
            "platform_machine": machine, "platform_release": "", "platform_system": "Linux", "platform_version": "",
            "python_full_version": PYTHON_VERSION, "platform_python_implementation": "CPython",
            "python_version": PYTHON_VERSION.rsplit(".", 1)[0], "sys_platform": "linux"}


def check_closed(site: Path, machine: str) -> None:
    """Every requirement of the agent (with its extras) and of each bundled distribution is met in ``site``.

    Raises:
        SystemExit: naming what is missing or at a version the requirement excludes, and the fix.
    """
    env = _marker_environment(machine)
    dists: dict[str, Distribution] = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    problems = []
    for name, dist in sorted(dists.items()):
        extras = [EXTRAS] if name == PROJECT else []
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in ["", *extras]):
                continue
            found = dists.get(canonicalize_name(req.name))
            if found is None or not req.specifier.contains(found.version, prereleases=True):
                have = "missing" if found is None else found.version
                problems.append(f"{name} needs {req} ({have})")
    if problems:
        raise SystemExit(f"{LOCK.name} does not satisfy the requirements for {machine}: " + "; ".join(problems)
                         + f". Fix: python {Path(__file__).relative_to(REPO)} --lock")


def _environment(stage: Path) -> None:
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


def lock(quiet: bool = False) -> None:
    """Resolve the agent's dependencies for both architectures on PyPI and write :data:`LOCK` with their hashes.

    A dependency published only as an sdist (pure Python, e.g. sdnotify) is pinned by its sdist's hash
    and listed under ``--no-binary``: the build makes its wheel on the build machine.

    Raises:
        SystemExit: the architectures resolve to different versions (a wheel missing for one of them).
    """
    flags = ["--quiet"] if quiet else []
    isolated = [sys.executable, "-m", "pip", "--isolated"]  # PyPI's own files, not a local mirror's
    with tempfile.TemporaryDirectory(prefix="pdm-lock-") as tmp:
        house = Path(tmp) / "wheels"
        # Our wheel, plus wheels built from the sdist-only dependencies so the binary-only resolution finds them.
        _run([*isolated, "wheel", *flags, "--wheel-dir", house, f"{REPO}[{EXTRAS}]"])
        pins: dict[str, dict[str, str]] = {}
        from_source: dict[str, str] = {}
        for arch, machine in ARCHES.items():
            report = Path(tmp) / f"{arch}.json"
            _run([*isolated, "install", *flags, "--dry-run", "--ignore-installed", "--report", report, "--target",
                  Path(tmp) / "t", *_target(machine), "--find-links", house, f"{PROJECT}[{EXTRAS}]=={version()}"])
            for item in json.loads(report.read_text(encoding="utf-8"))["install"]:
                dist: str = canonicalize_name(item["metadata"]["name"])
                found: str = item["metadata"]["version"]
                if dist == PROJECT:
                    continue
                if item["download_info"]["url"].startswith("file:"):
                    from_source[dist] = found
                    continue
                sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
                pins.setdefault(dist, {})[arch] = f"{found} {sha}"
        for name, pinned in from_source.items():
            sdists = Path(tmp) / "sdists" / name
            _run([*isolated, "download", *flags, "--no-deps", "--no-binary", ":all:", "--dest", sdists,
                  f"{name}=={pinned}"])
            (archive,) = sdists.iterdir()
            pins[name] = {arch: f"{pinned} {hashlib.sha256(archive.read_bytes()).hexdigest()}" for arch in ARCHES}
    lines = [f"--no-binary {','.join(sorted(from_source))}"] if from_source else []
    for name, by_arch in sorted(pins.items()):
        versions = {v.split()[0] for v in by_arch.values()}
        if len(by_arch) != len(ARCHES) or len(versions) != 1:
            raise SystemExit(f"{name} resolves differently per architecture: {by_arch}")
        hashes = sorted({v.split()[1] for v in by_arch.values()})
        lines.append(f"{name}=={versions.pop()} " + " ".join(f"--hash=sha256:{h}" for h in hashes))
    LOCK.write_text("# The gateway package's third-party distributions, pinned with the sha256 of their amd64 and\n"
                    "# arm64 wheels (of the sdist for --no-binary ones). Generated by\n"
                    "# `python packaging/build_deb.py --lock` from pyproject.toml's dependencies and its\n"
                    f"# [{EXTRAS}] extra; rerun it after changing them (the build checks the pins satisfy them).\n"
                    + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {LOCK} ({len(pins)} distributions)")


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


def stage(arch: str, work: Path, *, own: Path, quiet: bool = False) -> Path:
    """Build the package tree for ``arch`` below ``work``; returns it (DEBIAN/ written by :func:`pack`).

    Args:
        arch: amd64 or arm64.
        work: a scratch directory.
        own: our own files (:func:`_own`), the same for every architecture.
        quiet: no pip progress.
    """
    root = work / f"stage-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    site = _site_packages(root)
    _link_tree(_deps(arch, quiet), site)
    shutil.copytree(own / "site", site, dirs_exist_ok=True)
    shutil.copytree(own / "share", root / PREFIX / "share")
    check_closed(site, ARCHES[arch])
    _environment(root)
    _files(root)
    return root


def pack(tree: Path, arch: str, out: Path, *, pkg_version: str | None = None, fast: bool = False) -> Path:
    """Write DEBIAN/ and build ``out/pdm-edge-agent_<version>_<arch>.deb`` from ``tree``."""
    pkg_version = pkg_version or version()
    _control(tree, arch, pkg_version)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{pkg_version}_{arch}.deb"
    # zstd -1 packs the 210 MB tree in ~2 s (gzip -1 took 10 s, xz -6 minutes on the loaded 2-core CI
    # machine); dpkg reads zstd since 1.21.18 (bookworm ships 1.21.22). Releases use xz: the smallest
    # download to a gateway on a mobile link.
    compression = ["-Zzstd", "-z1"] if fast else ["-Zxz", "-z6"]
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
    """Command line: build one package per ``--arch``, or re-resolve the lock."""
    parser = argparse.ArgumentParser(description="Build the pdm-edge-agent Debian package")
    parser.add_argument("--arch", action="append", choices=sorted(ARCHES), help="amd64 and/or arm64 (default both)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output directory (default dist/)")
    parser.add_argument("--version", dest="pkg_version", help="Debian version (default: the project version)")
    parser.add_argument("--fast", action="store_true", help="tests: zstd -1 instead of xz (seconds, not minutes)")
    parser.add_argument("--quiet", action="store_true", help="no pip progress")
    parser.add_argument("--lock", action="store_true",
                        help=f"re-resolve the dependencies and write {LOCK.relative_to(REPO)}, then exit")
    args = parser.parse_args(argv)
    if args.lock:
        lock(quiet=args.quiet)
        return 0
    if shutil.which("dpkg-deb") is None:
        print("build_deb: dpkg-deb is needed (apt-get install dpkg)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pdm-deb-") as tmp:
        own = _own(Path(tmp), args.quiet)
        for arch in args.arch or sorted(ARCHES):
            tree = stage(arch, Path(tmp), own=own, quiet=args.quiet)
            deb = pack(tree, arch, args.out, pkg_version=args.pkg_version, fast=args.fast)
            print(f"built {deb} ({deb.stat().st_size // 1024} KiB, installed {_installed_size_kib(tree)} KiB)")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
