"""Words for machines, metrics and faults: the one place the bridge looks them up. Pure.

Tickets need a kind's name in the customer's language, a metric's name and unit, a fault's failure
threshold for the plot, and a diagnosis's name, parts and checks. A :class:`Vocabulary` answers from
the machine profiles (``pdm_common.profiles``): the built-in ones and the kinds the configuration
declares (``kinds_path`` / ``[kinds]``, the same declarations the agents detect with), and derives
honestly otherwise: an undeclared kind gets a generic word, a metric's unit comes from its name's
suffix (DESIGN.md §3: "metric names are snake_case with a unit suffix"), an unknown fault has no
threshold and is named as unclassified. Nothing here raises for an unknown name, so the delivery loop
never meets a KeyError. Norwegian customer messages use the definite form ("i varmepumpen"), kept here
because it is grammar of the messages, not a word of the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloud_bridge.fault_actions import FaultAction, FaultActions
from pdm_common.profiles import Advice, ProfileRegistry

__all__ = ["BUILTIN_VOCABULARY", "MetricWords", "Threshold", "Vocabulary"]

_DEFINITE_NO = {"heat_pump": "varmepumpen", "pump": "pumpen"}
"""Norwegian takes the definite form ("i varmepumpen"), which reads naturally in every message; a
kind without one here is "anlegget" (the installation), true of every machine."""

_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_m3_h", "m³/h"), ("_mm_s", "mm/s"), ("_kwh", "kWh"), ("_lpm", "l/min"), ("_rpm", "rpm"),
    ("_bar", "bar"), ("_pct", "%"), ("_kw", "kW"), ("_hz", "Hz"), ("_c", "°C"), ("_k", "K"), ("_a", "A"),
    ("_v", "V"), ("_w", "W"), ("_g", "g"), ("_s", "s"), ("_h", "h"),
)
"""Longest first, so ``flow_m3_h`` is m³/h and not h. A name without a known suffix is dimensionless
(``vibration_kurtosis``, ``cop``)."""


@dataclass(frozen=True, slots=True)
class MetricWords:
    """A metric's display name and unit (empty for dimensionless quantities)."""

    name: str
    unit: str

    def value(self, number: float) -> str:
        """``2.1 bar``, ``3.2`` (dimensionless), ``-7.5 °C``.

        >>> BUILTIN_VOCABULARY.metric_words("suction_pressure_bar").value(2.14159)
        '2.14 bar'
        """
        text = f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"
        return f"{text} {self.unit}" if self.unit else text


@dataclass(frozen=True, slots=True)
class Threshold:
    """The failure criterion of a fault: ``metric`` crossing ``value`` in ``direction``."""

    metric: str
    value: float
    direction: str
    description: str


def _derived(metric: str) -> MetricWords:
    for suffix, unit in _UNIT_SUFFIXES:
        if metric.endswith(suffix) and len(metric) > len(suffix):
            return MetricWords(metric.removesuffix(suffix).replace("_", " "), unit)
    return MetricWords(metric.replace("_", " "), "")


def _action(advice: Advice, code: str) -> FaultAction:
    return FaultAction(name=dict(advice.words) or {"en": code.replace("_", " ")}, parts=list(advice.parts),
                       checks=list(advice.checks))


class Vocabulary:
    """The words of one set of machine profiles: the built-in kinds plus those a configuration declares.

    Args:
        declared: ``[kinds.<name>]`` tables (``BridgeSettings.declared_kinds()``), already validated.

    >>> v = Vocabulary({"screw_chiller": {"words": {"en": "screw chiller"},
    ...                 "channels": {"oil_pressure_bar": {"unit": "bar", "words": {"en": "oil pressure"}}}}})
    >>> v.kind_word("screw_chiller", "en"), v.metric_words("oil_pressure_bar", "screw_chiller")
    ('screw chiller', MetricWords(name='oil pressure', unit='bar'))
    """

    def __init__(self, declared: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        declared = declared or {}
        self.profiles = ProfileRegistry.with_declared(declared)
        self._declared_faults: dict[tuple[str, str], Advice] = {}
        for kind, table in declared.items():
            profile = self.profiles.require(kind)
            for code in table.get("faults", {}):
                fault = profile.faults[code]
                if fault.words or fault.parts or fault.checks:
                    self._declared_faults[(kind, code)] = fault

    def metric_words(self, metric: str, kind: str | None = None, asset: str | None = None) -> MetricWords:
        """The display name and unit of ``metric``: its kind's (and asset's) profile's, else from its suffix.

        >>> BUILTIN_VOCABULARY.metric_words("flow_m3_h"), BUILTIN_VOCABULARY.metric_words("vibration_kurtosis").unit
        (MetricWords(name='flow', unit='m³/h'), '')
        >>> BUILTIN_VOCABULARY.metric_words("suction_pressure_bar", "heat_pump")
        MetricWords(name='suction pressure', unit='bar')
        """
        derived = _derived(metric)
        profile = self.profiles.get(kind) if kind is not None else None
        if profile is not None and asset is not None:
            profile = profile.for_asset(asset)
        channel = None if profile is None else profile.channels.get(metric)
        if channel is None:
            return derived
        unit = derived.unit if channel.unit == "" else "" if channel.unit == "-" else channel.unit
        return MetricWords(channel.words.get("en") or derived.name, unit)

    def kind_word(self, kind: str, language: str) -> str:
        """The machine kind in ``language``: ``heat pump`` / ``varmepumpen``; an undeclared kind by its own name.

        >>> BUILTIN_VOCABULARY.kind_word("screw_chiller", "en"), BUILTIN_VOCABULARY.kind_word("screw_chiller", "no")
        ('screw chiller', 'anlegget')
        >>> BUILTIN_VOCABULARY.kind_word("heat_pump", "no")
        'varmepumpen'
        """
        if language == "no":
            return _DEFINITE_NO.get(kind, "anlegget")
        return self.profiles.kind_words(kind, language)

    def failure_threshold(self, fault_code: str, kind: str | None = None) -> Threshold | None:
        """The failure criterion of ``fault_code`` on a ``kind`` machine (drawn on the ticket plot), or None.

        >>> BUILTIN_VOCABULARY.failure_threshold("low_flow", "heat_pump").value
        9.0
        >>> BUILTIN_VOCABULARY.failure_threshold("low_flow", "screw_chiller") is None
        True
        """
        profile = self.profiles.get(kind) if kind is not None else None
        criterion = None if profile is None else profile.criterion(fault_code)
        if criterion is None:
            return None
        return Threshold(criterion.metric, criterion.threshold, criterion.direction, criterion.description)

    def fault_action(self, kind: str, code: str, table: FaultActions) -> FaultAction:
        """Name, parts and checks of diagnosis ``code`` on a ``kind`` machine, the most specific source first.

        1. the fault as the configuration declares it for this kind (when it gives words, parts or checks);
        2. the fault-action table's entry for the code (``fault_actions_path``: the operator's own lists);
        3. the fault as the kind's built-in profile describes it (a fault it names without words, parts
           or checks: its code in words, with the unclassified entry's parts and checks);
        4. the table's ``unclassified`` entry (else the generic one): a code nobody describes is shown
           honestly as unclassified, never as no ticket.
        """
        declared = self._declared_faults.get((kind, code))
        if declared is not None:
            return _action(declared, code)
        if code in table:
            return table.for_code(code)
        profile = self.profiles.get(kind)
        fault = None if profile is None else profile.faults.get(code)
        fallback = table.for_code(code)
        if fault is None:
            return fallback
        if fault.words or fault.parts or fault.checks:
            return _action(fault, code)
        # A fault the profile knows (its signature matched) but describes no further: its own name, with
        # the unclassified entry's parts and checks.
        return fallback.model_copy(update={"name": {"en": code.replace("_", " ")}})


BUILTIN_VOCABULARY = Vocabulary()
"""The built-in kinds only (a bridge without declarations, and the doctests)."""
