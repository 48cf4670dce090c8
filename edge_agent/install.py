"""``edge-agent install`` / ``edge-agent uninstall``: put the agent on a gateway as a systemd service.

The plan is pure (:func:`install_plan`, :func:`uninstall_plan` return :class:`Step` lists); one
small executor does the file system and process work. Running ``install`` again is the upgrade:
the unit and the user definition are replaced, the config, credentials, state (outbox,
checkpoints) and logs are kept. ``uninstall`` removes the unit and keeps data unless ``--purge``.

Layout on the gateway (all below ``--root``, default ``/``)::

    usr/lib/sysusers.d/pdm-edge.conf              system user pdm-edge (created by systemd-sysusers)
    etc/systemd/system/pdm-edge-agent.service     the unit, ExecStart pointing at --bin-dir
    etc/pdm-edge/edge-agent.toml                  config from the example, never overwritten
    etc/pdm-edge/edge-agent.example.toml          the current example, to diff after an upgrade
    etc/pdm-edge/credentials/edge-agent/          root-only; each file F reaches the unit as
                                                  /run/credentials/pdm-edge-agent.service/secret_F
    var/lib/pdm-edge-agent/                       state: outbox.sqlite3, checkpoints/
    var/log/pdm-edge-agent/                       LogsDirectory=

The unit and the example config come from the installed package's data (``share/pdm-edge/`` of
the environment, put there by the wheel) or from a checkout/unpacked sdist (``systemd/``,
``config/``); ``--source DIR`` names another such directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from pdm_common.logs import get_logger

__all__ = [
    "SYSUSERS",
    "InstallError",
    "Layout",
    "MakeDir",
    "Remove",
    "Run",
    "Step",
    "WriteFile",
    "add_parser",
    "execute",
    "install_plan",
    "render_unit",
    "uninstall_plan",
]

_log = get_logger(__name__)

UNIT_NAME = "pdm-edge-agent.service"
USER = "pdm-edge"
SHIPPED_BIN_DIR = "/opt/pdm-edge/bin/"
"""The ExecStart prefix in systemd/pdm-edge-agent.service; replaced by ``--bin-dir``."""
_COMMAND_TIMEOUT_S = 120.0
"""systemctl/systemd-sysusers finish in seconds; a hung call must not hang the installer forever."""
SYSUSERS = f'u {USER} - "pdm-edge gateway agent" /var/lib/pdm-edge-agent /usr/sbin/nologin\n'
"""sysusers.d(5) line of the service user (also the Debian package's /usr/lib/sysusers.d/pdm-edge.conf)."""


class InstallError(EdgeAgentError):
    """Installing or removing the service failed; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything goes, relative to the target root."""

    unit: Path = Path("etc/systemd/system") / UNIT_NAME
    sysusers: Path = Path("usr/lib/sysusers.d/pdm-edge.conf")
    config_dir: Path = Path("etc/pdm-edge")
    state_dir: Path = Path("var/lib/pdm-edge-agent")
    logs_dir: Path = Path("var/log/pdm-edge-agent")

    @property
    def config(self) -> Path:
        """The live config file."""
        return self.config_dir / "edge-agent.toml"

    @property
    def example(self) -> Path:
        """The example shipped with the installed version."""
        return self.config_dir / "edge-agent.example.toml"

    @property
    def credentials(self) -> Path:
        """Directory of files handed to the unit by ``LoadCredential=secret:<this directory>``."""
        return self.config_dir / "credentials" / "edge-agent"

    @property
    def mqtt_password(self) -> Path:
        """The broker password credential (``/run/credentials/pdm-edge-agent.service/secret_mqtt-password``)."""
        return self.credentials / "mqtt-password"


@dataclass(frozen=True, slots=True)
class MakeDir:
    """Create a directory (and parents) with this mode and owner; existing content is kept.

    ``mode=None`` only makes sure the directory exists (for system directories such as ``/etc``).
    """

    path: Path
    mode: int | None
    owner: str = "root"


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Write a file; with ``keep_existing`` an existing file is left as it is (operator's edits)."""

    path: Path
    content: bytes
    mode: int
    owner: str = "root"
    keep_existing: bool = False


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete a file or a whole directory tree; absent is fine."""

    path: Path


@dataclass(frozen=True, slots=True)
class Run:
    """Run a command; ``{root}`` in an argument becomes the target root."""

    argv: tuple[str, ...]


Step = MakeDir | WriteFile | Remove | Run


def render_unit(unit_text: str, bin_dir: Path) -> str:
    """The shipped unit with ExecStart pointing at the ``edge-agent`` in ``bin_dir``."""
    return unit_text.replace(SHIPPED_BIN_DIR, f"{bin_dir.as_posix().rstrip('/')}/")


def _systemctl(root_is_host: bool, *args: str) -> Run:
    return Run(("systemctl", *args) if root_is_host else ("systemctl", "--root={root}", *args))


def install_plan(*, unit_text: str, example_config: bytes, bin_dir: Path, systemctl: bool, root_is_host: bool,
                 mqtt_password: bytes | None = None, layout: Layout = Layout()) -> list[Step]:
    """Steps that install or upgrade the agent.

    Args:
        unit_text: ``systemd/pdm-edge-agent.service`` as shipped.
        example_config: ``config/edge-agent.example.toml``.
        bin_dir: directory holding the ``edge-agent`` console script (the venv's ``bin``).
        systemctl: enable the unit (and restart it if it runs: the upgrade case).
        root_is_host: the target root is ``/`` (live systemd) rather than an image or a test dir.
        mqtt_password: replace the broker password credential with this; None keeps the current one.
        layout: target paths.
    """
    steps: list[Step] = [
        WriteFile(layout.sysusers, SYSUSERS.encode(), 0o644),
        MakeDir(Path("etc"), None),  # systemd-sysusers needs {root}/etc for its lock file
        Run(("systemd-sysusers", "--root={root}", f"{{root}}/{layout.sysusers}")),
        MakeDir(layout.config_dir, 0o755),
        MakeDir(layout.credentials.parent, 0o700),
        MakeDir(layout.credentials, 0o700),
        WriteFile(layout.example, example_config, 0o644),
        WriteFile(layout.config, example_config, 0o640, owner=f"root:{USER}", keep_existing=True),
        WriteFile(layout.mqtt_password, mqtt_password or b"", 0o600, keep_existing=mqtt_password is None),
        MakeDir(layout.state_dir, 0o750, owner=f"{USER}:{USER}"),
        MakeDir(layout.logs_dir, 0o750, owner=f"{USER}:{USER}"),
        WriteFile(layout.unit, render_unit(unit_text, bin_dir).encode(), 0o644),
    ]
    if systemctl:
        if root_is_host:
            steps.append(_systemctl(True, "daemon-reload"))
        steps.append(_systemctl(root_is_host, "enable", UNIT_NAME))
        if root_is_host:
            steps.append(_systemctl(True, "try-restart", UNIT_NAME))
    return steps


def uninstall_plan(*, purge: bool, systemctl: bool, root_is_host: bool, layout: Layout = Layout()) -> list[Step]:
    """Steps that remove the service; config, credentials, state and logs go only with ``purge``.

    The ``pdm-edge`` user stays (Debian keeps system users: files it owned may be on backups).
    """
    steps: list[Step] = []
    if systemctl:
        steps.append(_systemctl(root_is_host, "disable", *(("--now",) if root_is_host else ()), UNIT_NAME))
    steps.append(Remove(layout.unit))
    if systemctl and root_is_host:
        steps.append(_systemctl(True, "daemon-reload"))
    if purge:
        steps += [Remove(layout.config), Remove(layout.example), Remove(layout.credentials),
                  Remove(layout.state_dir), Remove(layout.logs_dir), Remove(layout.sysusers)]
    return steps


def execute(steps: Sequence[Step], root: Path) -> list[str]:
    """Carry out ``steps`` below ``root``; returns one line per step for the operator.

    Raises:
        InstallError: a step failed (the steps before it stay done; running again is safe).
    """
    done: list[str] = []
    for step in steps:
        try:
            done.append(_do(step, root))
        except (OSError, subprocess.SubprocessError, KeyError) as exc:
            raise InstallError(f"{_describe(step)} failed: {exc}") from exc
        _log.info("install.step", step=done[-1])
    return done


def _describe(step: Step) -> str:
    if isinstance(step, Run):
        return "run " + " ".join(step.argv)
    return f"{type(step).__name__.lower()} /{step.path}"


def _do(step: Step, root: Path) -> str:
    if isinstance(step, Run):
        argv = [arg.replace("{root}", str(root)) for arg in step.argv]
        subprocess.run(argv, check=True, timeout=_COMMAND_TIMEOUT_S, capture_output=True)
        return "ran " + " ".join(argv)
    target = root / step.path
    if isinstance(step, Remove):
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        return f"removed /{step.path}"
    if isinstance(step, MakeDir):
        target.mkdir(parents=True, exist_ok=True)
        if step.mode is not None:
            _own(target, step.mode, step.owner, root)
        return f"directory /{step.path}"
    if step.keep_existing and target.exists():
        return f"kept /{step.path}"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside and rename: a crash mid-upgrade leaves the old file, never half a unit.
    partial = target.with_name(target.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, step.mode)
    with os.fdopen(fd, "wb") as out:
        out.write(step.content)
    _own(partial, step.mode, step.owner, root)
    partial.replace(target)
    return f"wrote /{step.path}"


def _own(path: Path, mode: int, owner: str, root: Path) -> None:
    path.chmod(mode)
    if os.geteuid() != 0:  # an unprivileged dry run into a test root: modes only
        return
    user, _, group = owner.partition(":")
    os.chown(path, _lookup(root / "etc/passwd", user), _lookup(root / "etc/group", group or user))


def _lookup(table: Path, name: str) -> int:
    """Numeric id of ``name`` in the target root's passwd/group file (not the host's)."""
    if name == "root":
        return 0
    for line in table.read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) > 2:
            return int(fields[2])
    raise KeyError(f"{name} not in {table}")


def _source_dir() -> Path:
    """Where the unit and example config are: the checkout this runs from, else this environment's data.

    A checkout or an unpacked sdist has ``systemd/`` and ``config/`` next to the packages; the wheel
    installs them as data files below ``{sys.prefix}/share/pdm-edge``.
    """
    for candidate in (Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / "pdm-edge"):
        if (candidate / "systemd" / UNIT_NAME).is_file():
            return candidate
    return Path(sys.prefix) / "share" / "pdm-edge"


def _cmd_install(args: argparse.Namespace) -> int:
    source: Path = args.source
    try:
        unit_text = (source / "systemd" / UNIT_NAME).read_text(encoding="utf-8")
        example = (source / "config" / "edge-agent.example.toml").read_bytes()
        password = args.mqtt_password_file.read_bytes() if args.mqtt_password_file else None
    except OSError as exc:
        print(f"edge-agent install: {exc}. Fix: reinstall the pdm-edge wheel (it carries share/pdm-edge/), or "
              "pass --source DIR (a pdm-edge checkout or unpacked sdist)", file=sys.stderr)
        return 1
    root: Path = args.root
    steps = install_plan(unit_text=unit_text, example_config=example, bin_dir=args.bin_dir,
                         systemctl=not args.no_systemctl, root_is_host=root.resolve() == Path("/"),
                         mqtt_password=password)
    return _run(steps, root, f"installed; next: edit /{Layout().config}, put the broker password in "
                f"/{Layout().mqtt_password}, run `edge-agent doctor`, then `systemctl start pdm-edge-agent`")


def _cmd_uninstall(args: argparse.Namespace) -> int:
    root: Path = args.root
    steps = uninstall_plan(purge=args.purge, systemctl=not args.no_systemctl, root_is_host=root.resolve() == Path("/"))
    kept = ("config, credentials, state and logs removed" if args.purge
            else "config, credentials, state and logs kept (--purge removes them)")
    return _run(steps, root, f"uninstalled; {kept}")


def _run(steps: Sequence[Step], root: Path, closing: str) -> int:
    try:
        for line in execute(steps, root):
            print(line)
    except InstallError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(closing)
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``install`` and ``uninstall`` on the ``edge-agent`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=Path("/"), help="target root directory (default /)")
    common.add_argument("--no-systemctl", action="store_true", help="do not call systemctl (images, tests)")
    install = subparsers.add_parser("install", parents=[common],
                                    help="install or upgrade the systemd service (keeps config and state)")
    install.add_argument("--bin-dir", type=Path, default=Path(sys.executable).parent,
                         help="directory with the edge-agent script (default: this Python's bin)")
    install.add_argument("--source", type=Path, default=_source_dir(),
                         help="directory with systemd/ and config/ (default: this package's data, else the checkout)")
    install.add_argument("--mqtt-password-file", type=Path, help="copy this file into the broker password credential")
    install.set_defaults(func=_cmd_install)
    uninstall = subparsers.add_parser("uninstall", parents=[common], help="remove the service (keeps data)")
    uninstall.add_argument("--purge", action="store_true", help="also delete config, credentials, state and logs")
    uninstall.set_defaults(func=_cmd_uninstall)
