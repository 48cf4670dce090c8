"""File readers of the bridge: the asset registry and the fault-action table (the adapters to the disk).

:class:`RegistryFile` re-reads ``registry_path`` when its modification time or size changes, so
operators edit it without restarting the bridge; a broken edit is logged and the last good registry
stays in force. :func:`load_fault_actions` reads ``fault_actions_path`` (re-read on SIGHUP). Parsing
is pure and lives with the records (:mod:`cloud_bridge.assets`, :mod:`cloud_bridge.fault_actions`).
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from cloud_bridge.assets import Registry, parse_registry
from cloud_bridge.errors import RegistryError
from cloud_bridge.fault_actions import FaultActions, parse_fault_actions
from pdm_common.logs import get_logger

__all__ = ["RegistryFile", "load_fault_actions"]

_log = get_logger(__name__)


def load_fault_actions(path: Path) -> FaultActions:
    """Read and validate the fault-action table at ``path``.

    Raises:
        RegistryError: the file is unreadable, not TOML, or an entry is invalid.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read fault-action table {path}: {exc}") from None
    return parse_fault_actions(doc)


class RegistryFile:
    """The registry on disk, re-read when the file changes (checked on each :meth:`current` call)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._registry = Registry({})
        self.reloads = 0
        self.reload_failures = 0
        self.current()

    def current(self) -> Registry:
        """The registry, reloaded first if the file's mtime or size changed since the last read."""
        try:
            st = self._path.stat()
        except OSError as exc:
            with self._lock:
                if self._stamp is not None or self.reload_failures == 0:
                    self.reload_failures += 1
                    _log.error("registry.unreadable", path=str(self._path), error=str(exc),
                               action="check registry_path; tickets go out without customer details")
                    self._stamp = None
                return self._registry
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._load()
            return self._registry

    def _load(self) -> None:
        try:
            doc = tomllib.loads(self._path.read_text(encoding="utf-8"))
            registry = parse_registry(doc)
        except (OSError, tomllib.TOMLDecodeError, RegistryError) as exc:
            self.reload_failures += 1
            _log.error("registry.reload_failed", path=str(self._path), error=str(exc)[:500],
                       action="fix the file; the previous registry stays in force")
            return
        self._registry = registry
        self.reloads += 1
        _log.info("registry.loaded", path=str(self._path), assets=len(registry))
