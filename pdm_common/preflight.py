"""What ``run`` will need, checked before it starts: files, certificates, writable directories.

A configuration can validate (types, ranges) and still be unable to run: a ``password_file`` that
does not exist, a CA bundle that is not PEM, a ``state_dir`` on a read-only mount. ``check-config``
and ``run`` of both services call :func:`preflight`; every problem comes back at once as a
:class:`Problem` naming the config field, the path, what is wrong and the fix, and
:func:`raise_problems` turns them into one :class:`~pdm_common.errors.ConfigError` (exit status 2).

Which fields are files is read off the settings model itself: every ``Path`` whose field name ends
in ``_file`` or ``_path`` (``password_file``, ``ca_file``, ``token_file``, ``registry_path`` …),
also inside ``[desks.<name>]`` tables and key maps such as ``[commands] keys``. A new secret file
in any section is checked without touching this module. TLS sections (:class:`TlsSettings`) also
have their CA bundle and client certificate parsed by the ``ssl`` module the service itself uses.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from pdm_common.errors import ConfigError

__all__ = [
    "Problem",
    "check_directory",
    "check_readable",
    "check_tls",
    "file_fields",
    "preflight",
    "raise_problems",
]

_FILE_SUFFIXES = ("_file", "_path")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that would stop ``run``.

    Attributes:
        field: the dotted config field (``mqtt.tls.ca_file``).
        path: the path it names (None for a problem of values, not of a file: ``require_signed_alerts``
            with no ``[gateways]`` table).
        detail: what is wrong.
        fix: what to do about it.
    """

    field: str
    path: Path | None
    detail: str
    fix: str

    def __str__(self) -> str:
        where = self.field if self.path is None else f"{self.field} = {str(self.path)!r}"
        return f"  - {where}: {self.detail}. Fix: {self.fix}."


def _walk(value: object, prefix: str) -> Iterator[tuple[str, bool, object]]:
    """(dotted field, whether it names a file, value) of every field and map entry below ``value``.

    A path names a file when its field is called ``*_file``/``*_path`` or when it is a value of a
    map (``[commands] keys = {id = "/path"}``).
    """
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            child = getattr(value, name)
            dotted = f"{prefix}.{name}" if prefix else name
            yield dotted, name.endswith(_FILE_SUFFIXES), child
            if isinstance(child, BaseModel | dict):
                yield from _walk(child, dotted)
    elif isinstance(value, dict):
        for key, child in value.items():
            dotted = f"{prefix}.{key}"
            yield dotted, True, child
            if isinstance(child, BaseModel | dict):
                yield from _walk(child, dotted)


def file_fields(settings: BaseModel) -> list[tuple[str, Path]]:
    """Every configured file path: ``Path`` fields named ``*_file``/``*_path`` and maps of paths.

    >>> from pdm_common.mqtt import MqttSettings
    >>> file_fields(MqttSettings(password_file=Path("/run/pw")))
    [('password_file', PosixPath('/run/pw'))]
    """
    found: list[tuple[str, Path]] = []
    for dotted, names_file, value in _walk(settings, ""):
        if isinstance(value, Path) and names_file:
            found.append((dotted, value))
    return found


def _tls_sections(settings: BaseModel) -> list[tuple[str, BaseModel]]:
    from pdm_common.mqtt import TlsSettings  # the model only; paho is not imported by this

    return [(dotted, value) for dotted, _file, value in _walk(settings, "")
            if isinstance(value, TlsSettings) and value.enabled]


def check_readable(field: str, path: Path) -> Problem | None:
    """``path`` is a regular, non-empty file this process can read."""
    try:
        with path.open("rb") as handle:
            empty = not handle.read(1)
    except FileNotFoundError:
        return Problem(field, path, "does not exist", _missing_fix(field, path))
    except IsADirectoryError:
        return Problem(field, path, "is a directory, not a file", f"point {field} at the file itself")
    except PermissionError:
        return Problem(field, path, f"not readable by uid {os.geteuid()}",
                       f"make it readable by the service user (chown/chmod), or fix {field}")
    except OSError as exc:
        return Problem(field, path, f"cannot be read: {exc.strerror or exc}", f"fix {field} or the file")
    if empty:
        return Problem(field, path, "is empty", f"write the content {field} expects into {path}")
    return None


def _missing_fix(field: str, path: Path) -> str:
    if PurePosixPath(path).is_relative_to("/run/credentials"):
        return ("systemd creates /run/credentials/<unit>/ only for the running unit: put the secret in "
                "/etc/pdm-edge/credentials/<service>/ (docs/deploy.md, 'Credentials') and start the unit, or "
                f"point {field} at a readable file when running by hand")
    return f"create {path}, or set {field} to the file's real location"


def check_tls(field: str, tls: BaseModel, resolve: Mapping[Path, Path] | None = None) -> list[Problem]:
    """The CA bundle and the client certificate/key of an enabled TLS section load into ``ssl``.

    Args:
        field: dotted name of the section (``mqtt.tls``).
        tls: a :class:`~pdm_common.mqtt.TlsSettings`.
        resolve: where to read a configured path instead (credential sources); default as configured.
    """
    where = dict(resolve or {})
    ca: Path | None = getattr(tls, "ca_file", None)
    cert: Path | None = getattr(tls, "cert_file", None)
    key: Path | None = getattr(tls, "key_file", None)
    problems: list[Problem] = []
    if ca is not None and check_readable(f"{field}.ca_file", where.get(ca, ca)) is None:
        try:
            ssl.create_default_context(cafile=str(where.get(ca, ca)))
        except (ssl.SSLError, ValueError) as exc:
            problems.append(Problem(f"{field}.ca_file", ca, f"is not a PEM CA bundle ({exc})",
                                    "use the PEM file (-----BEGIN CERTIFICATE-----) of the CA that signed the broker"))
    pair = (("cert_file", cert), ("key_file", key))
    if cert is not None and key is not None and all(
            check_readable(f"{field}.{n}", where.get(p, p)) is None for n, p in pair if p is not None):
        try:
            ssl.create_default_context().load_cert_chain(str(where.get(cert, cert)), str(where.get(key, key)))
        except (ssl.SSLError, ValueError) as exc:
            problems.append(Problem(f"{field}.cert_file", cert, f"does not load with key_file {key} ({exc})",
                                    "install the PEM certificate and the private key that belongs to it"))
    return problems


def check_directory(field: str, path: Path) -> Problem | None:
    """``path`` is a writable directory, or can be created (its nearest existing parent is writable)."""
    probe = path
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if probe == path and not path.is_dir():
        return Problem(field, path, "exists and is not a directory", f"move the file away or set {field} elsewhere")
    if not probe.is_dir():
        return Problem(field, path, f"cannot be created: {probe} is not a directory",
                       f"set {field} to a path below a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        return Problem(field, path, f"{what} by uid {os.geteuid()}",
                       f"give the service user write access (systemd: StateDirectory=), or set {field} elsewhere")
    return None


def preflight(settings: BaseModel, *, directories: Sequence[tuple[str, Path]] = (),
              resolve: Mapping[Path, Path] | None = None) -> list[Problem]:
    """Everything ``run`` needs from the file system, for ``settings``.

    Args:
        settings: a service's loaded settings.
        directories: ``(field, path)`` of directories the service writes (state, outbox).
        resolve: configured path → path to read instead; ``check-config`` maps
            ``/run/credentials/<unit>/…`` to the unit's ``LoadCredential=`` sources, ``run`` reads
            the paths as configured.

    Returns:
        Every problem found, in field order; empty when ``run`` has what it needs.
    """
    where = dict(resolve or {})
    problems = [p for field, path in file_fields(settings)
                if (p := check_readable(field, where.get(path, path))) is not None]
    for field, tls in _tls_sections(settings):
        problems += check_tls(field, tls, where)
    problems += [p for field, path in directories if (p := check_directory(field, path)) is not None]
    return problems


def raise_problems(problems: Sequence[Problem], config: Path | None) -> None:
    """Raise one :class:`ConfigError` listing every problem; return when there are none."""
    if problems:
        where = f"in {config}" if config else "(defaults + PDM_* environment)"
        raise ConfigError(f"configuration {where} cannot run:\n" + "\n".join(str(p) for p in problems))
