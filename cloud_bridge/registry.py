"""The asset registry: who owns an asset, where it is, what it is and how it has been serviced.

The file (``config/assets.example.toml``) holds one ``[[asset]]`` table per asset. Parsing is pure
(:func:`parse_registry`); :class:`RegistryFile` is the thin adapter that re-reads the file when its
modification time changes, so operators edit it without restarting the bridge. A broken edit is
logged and the last good registry stays in force.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cloud_bridge.errors import RegistryError
from pdm_common.contracts import NAME_PATTERN, AssetKind
from pdm_common.logs import get_logger

__all__ = ["AssetRecord", "Contact", "Registry", "RegistryFile", "ServiceVisit", "parse_registry"]

_log = get_logger(__name__)

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=300)]

MAX_ASSETS = 200_000
"""A vendor fleet is thousands to tens of thousands of assets; the bound refuses a runaway file."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Record):
    """Who the technician calls."""

    name: Text
    phone: Text | None = None
    email: Text | None = None


class ServiceVisit(_Record):
    """One past service visit."""

    date: date
    work: Text


class AssetRecord(_Record):
    """Everything the desk needs to know about one asset and its owner."""

    site: Name
    asset: Name
    kind: AssetKind
    customer: Text
    customer_id: Name | None = Field(None, description="key for per-customer desk routing")
    address: Text
    contact: Contact
    language: Literal["en", "no"] | None = None
    vulnerable_occupants: list[Text] = Field(default_factory=list, max_length=10)
    production_critical: bool = Field(False, description="a production line with no spare (pumps)")
    model: Text
    serial: Text
    install_date: date
    warranty_until: date | None = None
    sla_hours: float | None = Field(None, gt=0, description="contractual response time; caps the priority SLA")
    service_history: list[ServiceVisit] = Field(default_factory=list, max_length=100)

    def under_warranty(self, on: date) -> bool:
        """True when the warranty covers ``on``."""
        return self.warranty_until is not None and on <= self.warranty_until


class Registry:
    """An immutable lookup from (site, asset) to :class:`AssetRecord`."""

    def __init__(self, records: Mapping[tuple[str, str], AssetRecord]) -> None:
        self._records = dict(records)

    def __len__(self) -> int:
        return len(self._records)

    def lookup(self, site: str, asset: str) -> AssetRecord | None:
        """The asset's record, or None for an asset the registry does not know."""
        return self._records.get((site, asset))


def parse_registry(doc: Mapping[str, Any]) -> Registry:
    """Validate a parsed registry TOML document.

    Raises:
        RegistryError: naming the entry (by position and site/asset) and the offending fields.
    """
    raw = doc.get("asset", [])
    if not isinstance(raw, list):
        raise RegistryError("registry: 'asset' must be an array of tables ([[asset]])")
    if len(raw) > MAX_ASSETS:
        raise RegistryError(f"registry holds {len(raw)} assets, limit {MAX_ASSETS}")
    records: dict[tuple[str, str], AssetRecord] = {}
    for index, entry in enumerate(raw):
        try:
            record = AssetRecord.model_validate(entry)
        except ValidationError as exc:
            label = f"{entry.get('site')}/{entry.get('asset')}" if isinstance(entry, dict) else "?"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
            )
            raise RegistryError(f"registry entry #{index + 1} ({label}): {problems}") from None
        key = (record.site, record.asset)
        if key in records:
            raise RegistryError(f"registry entry #{index + 1}: {record.site}/{record.asset} is listed twice")
        records[key] = record
    return Registry(records)


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
