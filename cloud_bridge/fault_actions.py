"""Parts and checks per fault code, from ``config/fault-actions.toml``.

Each table is keyed by a fault code of ``pdm_common.catalog.FaultCode`` (plus ``sensor_fault``) and
gives the fault's name in each customer language, the parts a technician should bring and the checks
to make, so the first visit can fix it. A code missing from the table gets a generic entry rather
than no ticket.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cloud_bridge.errors import RegistryError

__all__ = ["FaultAction", "FaultActions", "load_fault_actions", "parse_fault_actions"]

Text = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class FaultAction(BaseModel):
    """What to bring and what to check for one fault code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: dict[str, Text] = Field(min_length=1, description="fault name per language code")
    parts: list[Text] = Field(default_factory=list, max_length=30)
    checks: list[Text] = Field(default_factory=list, max_length=30)

    def name_in(self, language: str) -> str:
        """The fault's name in ``language``, falling back to English, then to any name."""
        return self.name.get(language) or self.name.get("en") or next(iter(self.name.values()))


GENERIC = FaultAction(
    name={"en": "abnormal operation", "no": "unormal drift"},
    parts=[],
    checks=["Inspect the unit and read its fault log", "Compare the contributing sensors with the plot"],
)


class FaultActions:
    """Lookup of :class:`FaultAction` by fault code, with a generic fallback."""

    def __init__(self, table: Mapping[str, FaultAction]) -> None:
        self._table = dict(table)

    def __contains__(self, code: object) -> bool:
        return code in self._table

    def for_code(self, code: str) -> FaultAction:
        """The entry for ``code``; the generic entry when the table has none."""
        return self._table.get(code, GENERIC)


def parse_fault_actions(doc: Mapping[str, Any]) -> FaultActions:
    """Validate a parsed fault-action TOML document.

    Raises:
        RegistryError: naming the fault code and the bad field.
    """
    table: dict[str, FaultAction] = {}
    for code, entry in doc.items():
        try:
            table[code] = FaultAction.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise RegistryError(f"fault-actions [{code}] {loc}: {first['msg']}") from None
    return FaultActions(table)


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
