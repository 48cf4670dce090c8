"""The profile registry: built-in kinds plus the kinds a configuration declares.

One registry answers, for agent and bridge alike, "what is this kind?": its channels and faults
(:meth:`ProfileRegistry.get`), and the words, parts and checks a ticket shows for a diagnosis
(:meth:`ProfileRegistry.advice`), with generic fallbacks so a vendor kind without words still gets a
readable ticket. An unknown kind is never answered with another kind's profile.

Declarations come from TOML, one table per kind (the agent's ``[kinds.<name>]``)::

    [kinds.chiller]
    words = { en = "chiller" }
    operating = { channel = "compressor_hz", above = 0 }
    [kinds.chiller.channels.outdoor_temp_c]
    role = "driver"
    unit = "°C"
    [kinds.chiller.assets.ch-7.channels.oil_temp_c]
    unit = "°C"

A declaration named like a built-in kind extends it: its channels, faults and assets are merged over
the built-in ones (a heat pump with an extra sensor), its other keys replace the built-in's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from pdm_common.errors import ProfileError
from pdm_common.profiles import heat_pump, pump
from pdm_common.profiles.codes import SENSOR_FAULT, UNCLASSIFIED
from pdm_common.profiles.schema import Advice, Profile

__all__ = ["BUILTIN", "ProfileRegistry", "parse_declarations"]

BUILTIN: tuple[Profile, ...] = (heat_pump.PROFILE, pump.PROFILE)
"""The kinds the product ships. A new built-in kind is one module beside ``heat_pump.py`` plus its line here."""

SENSOR_ADVICE = Advice(
    words={"en": "sensor fault (the machine itself looks healthy)", "no": "sensorfeil (selve maskinen ser frisk ut)"},
    parts=("replacement sensor of the type named in the ticket", "sensor cable and connector"),
    checks=("Check the sensor named in the ticket against a reference instrument",
            "Check its cable, connector and mounting",
            "No machine repair is indicated unless the reference reading disagrees"),
)
"""Every kind's ``sensor_fault``: the advice does not depend on the machine."""

UNCLASSIFIED_ADVICE = Advice(
    words={"en": "abnormal operation (no known fault pattern)", "no": "unormal drift (ukjent feilmønster)"},
    checks=("Inspect the unit and read its fault log", "Compare the contributing sensors with the plot"),
)
"""A machine anomaly no signature explains, and the fallback for a code a profile does not know."""

_MERGED = ("channels", "faults", "assets", "lone_leads")
"""Keys of a declaration that are merged into a built-in profile of the same name, not replaced."""


def parse_declarations(doc: Mapping[str, Any]) -> dict[str, Profile]:
    """Validate a ``kinds`` table (kind name -> declaration) into profiles.

    Raises:
        ProfileError: naming the kind, the field and what is wrong.
    """
    out: dict[str, Profile] = {}
    builtin = {p.name: p for p in BUILTIN}
    for name, table in doc.items():
        if not isinstance(table, Mapping):
            raise ProfileError(f"kinds.{name}: expected a table of channels, operating, faults …")
        base = builtin.get(name)
        try:
            if base is None:
                out[name] = Profile.model_validate({**table, "name": name})
            else:
                merged: dict[str, Any] = base.model_dump(exclude_defaults=False)
                for key, value in table.items():
                    if key in _MERGED and isinstance(value, Mapping):
                        merged[key] = {**merged.get(key, {}), **value}
                    else:
                        merged[key] = value
                merged["name"] = name
                out[name] = Profile.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ProfileError(f"kinds.{name}.{loc}: {first['msg']}") from None
    return out


class ProfileRegistry:
    """Profiles by kind name.

    Args:
        profiles: the profiles; later ones replace earlier ones of the same name.

    >>> reg = ProfileRegistry.builtin()
    >>> reg.get("pump").faults["seal_leak"].criterion.metric
    'seal_temp_c'
    >>> reg.get("chiller") is None
    True
    >>> reg.advice("pump", "seal_leak").name_in("no")
    'lekkasje i mekanisk tetning'
    >>> reg.advice("chiller", "unclassified").name_in("en")
    'abnormal operation (no known fault pattern)'
    """

    def __init__(self, profiles: Iterable[Profile] = BUILTIN) -> None:
        self._profiles: dict[str, Profile] = {p.name: p for p in profiles}

    @classmethod
    def builtin(cls) -> ProfileRegistry:
        """The built-in kinds only."""
        return cls(BUILTIN)

    @classmethod
    def with_declared(cls, declared: Mapping[str, Profile | Mapping[str, Any]]) -> ProfileRegistry:
        """The built-in kinds plus (or extended by) ``declared``.

        Args:
            declared: kind name -> :class:`Profile` or its raw TOML table.

        Raises:
            ProfileError: a raw declaration is invalid.
        """
        raw = {k: v for k, v in declared.items() if not isinstance(v, Profile)}
        parsed = parse_declarations(raw)
        ready = {k: v for k, v in declared.items() if isinstance(v, Profile)}
        return cls([*BUILTIN, *ready.values(), *parsed.values()])

    def __contains__(self, kind: object) -> bool:
        return kind in self._profiles

    def __iter__(self) -> Any:
        return iter(self._profiles.values())

    def kinds(self) -> tuple[str, ...]:
        """Every kind name, built-in first."""
        return tuple(self._profiles)

    def get(self, kind: str) -> Profile | None:
        """The profile of ``kind``, or None: an unknown kind is never answered with another's."""
        return self._profiles.get(kind)

    def require(self, kind: str) -> Profile:
        """The profile of ``kind``.

        Raises:
            ProfileError: the kind is neither built in nor declared, with what to do about it.
        """
        profile = self._profiles.get(kind)
        if profile is None:
            raise ProfileError(
                f"kind {kind!r} has no profile: declare it under [kinds.{kind}] with its channels, or send one of "
                + ", ".join(self._profiles)
            )
        return profile

    # --- words for people ------------------------------------------------------------------------
    def advice(self, kind: str, code: str) -> Advice:
        """Words, parts and checks for diagnosis ``code`` on a ``kind`` machine.

        ``sensor_fault`` and ``unclassified`` have shared advice; a code the kind's profile does not
        know (or an unknown kind) gets the unclassified checks under the code's own words.
        """
        if code == SENSOR_FAULT:
            return SENSOR_ADVICE
        profile = self._profiles.get(kind)
        fault = None if profile is None else profile.faults.get(code)
        if fault is not None:
            if fault.words:
                return fault
            return Advice(words={"en": _humane(code)}, parts=fault.parts, checks=fault.checks)
        if code == UNCLASSIFIED:
            return UNCLASSIFIED_ADVICE
        return UNCLASSIFIED_ADVICE.model_copy(update={"words": {"en": _humane(code)}})

    def kind_words(self, kind: str, language: str = "en") -> str:
        """The kind's name in ``language`` (falling back to English, then to the kind itself)."""
        profile = self._profiles.get(kind)
        words = {} if profile is None else profile.words
        return words.get(language) or words.get("en") or _humane(kind)

    def channel_words(self, kind: str, metric: str, language: str = "en") -> str:
        """A channel's name in ``language`` (falling back to English, then to the metric name)."""
        profile = self._profiles.get(kind)
        channel = None if profile is None else profile.channels.get(metric)
        words = {} if channel is None else channel.words
        return words.get(language) or words.get("en") or _humane(metric)


def _humane(name: str) -> str:
    """``four_way_valve_leak`` -> ``four way valve leak``: better than a code on a phone screen."""
    return name.replace("_", " ")
