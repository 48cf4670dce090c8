"""Parts and checks per fault code, from ``config/fault-actions.toml``. Pure (the file is read by
:func:`cloud_bridge.registry.load_fault_actions`).

Each table is keyed by a probable-fault code (the built-in profiles' codes, ``sensor_fault`` and
``unclassified``, or a vendor profile's own) and gives the fault's name in each customer language,
the parts a technician should bring and the checks to make, so the first visit can fix it. A code
missing from the table is shown honestly as unclassified (the table's own ``unclassified`` entry
when it has one), never as no ticket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cloud_bridge.errors import RegistryError

__all__ = ["GENERIC", "UNCLASSIFIED", "FaultAction", "FaultActions", "parse_fault_actions"]

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


UNCLASSIFIED = "unclassified"
"""The probable-fault code when no signature fits (DESIGN.md §9)."""

GENERIC = FaultAction(
    name={"en": "unclassified abnormal operation", "no": "uklassifisert unormal drift"},
    parts=[],
    checks=["Inspect the unit and read its fault log", "Compare the contributing sensors with the plot"],
)
"""Used for a code the table does not know, when the table has no ``unclassified`` entry either."""


class FaultActions:
    """Lookup of :class:`FaultAction` by fault code, with a generic fallback."""

    def __init__(self, table: Mapping[str, FaultAction]) -> None:
        self._table = dict(table)

    def __contains__(self, code: object) -> bool:
        return code in self._table

    def for_code(self, code: str) -> FaultAction:
        """The entry for ``code``; the ``unclassified`` entry (else :data:`GENERIC`) when the table has none."""
        return self._table.get(code) or self._table.get(UNCLASSIFIED, GENERIC)


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
