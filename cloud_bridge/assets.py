"""The asset registry's records: who owns an asset, where it is, what it is and how it has been serviced. Pure.

The file (``config/assets.example.toml``) holds one ``[[asset]]`` table per asset; :func:`parse_registry`
validates a parsed document. Reading the file is the adapter's job (:mod:`cloud_bridge.registry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from cloud_bridge.errors import RegistryError
from pdm_common.contracts import KIND_PATTERN, NAME_PATTERN

__all__ = ["AssetRecord", "Contact", "Registry", "ServiceVisit", "parse_registry"]

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
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
    customer: Text
    customer_id: Name | None = Field(None, description="key for per-customer desk routing")
    address: Text
    contact: Contact
    language: Literal["en", "no"] | None = None
    timezone: str | None = Field(None, description="IANA zone of the customer (default: [sla] timezone)")
    vulnerable_occupants: list[Text] = Field(default_factory=list, max_length=10)
    production_critical: bool = Field(False, description="a production line with no spare (pumps)")
    model: Text
    serial: Text
    install_date: date
    warranty_until: date | None = None
    sla_hours: float | None = Field(None, gt=0, description="contractual response time; caps the priority SLA")
    service_history: list[ServiceVisit] = Field(default_factory=list, max_length=100)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Oslo") from None
        return value

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
