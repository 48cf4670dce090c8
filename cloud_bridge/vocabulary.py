"""Words for machines, metrics and faults: the one place the bridge looks them up. Pure.

Tickets need a kind's name in the customer's language, a metric's name and unit, and a fault's
failure threshold for the plot. Until the shared machine-profile registry (``pdm_common.profiles``)
is available, these come from the built-in catalogue where it knows the answer and are derived
honestly otherwise: a vendor's own kind gets a generic word, a metric's unit comes from its name's
suffix (DESIGN.md §3: "metric names are snake_case with a unit suffix"), an unknown fault has no
threshold. Nothing here raises for an unknown name, so the delivery loop never meets a KeyError.
Switching to the profile registry is a change of this module only.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdm_common.catalog import FAILURE_CRITERIA

__all__ = ["MetricWords", "Threshold", "failure_threshold", "kind_word", "metric_words"]

_KIND_WORDS = {
    "heat_pump": {"en": "heat pump", "no": "varmepumpen"},
    "pump": {"en": "pump", "no": "pumpen"},
}
"""Norwegian takes the definite form ("i varmepumpen"), which reads naturally in every message."""

_GENERIC_KIND = {"no": "anlegget"}
"""A vendor kind has no translation here; "the installation" is true of every machine."""

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

        >>> metric_words("suction_pressure_bar").value(2.14159)
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


def metric_words(metric: str) -> MetricWords:
    """The display name and unit of ``metric``, from its unit suffix.

    >>> metric_words("flow_m3_h"), metric_words("vibration_kurtosis").unit
    (MetricWords(name='flow', unit='m³/h'), '')
    """
    for suffix, unit in _UNIT_SUFFIXES:
        if metric.endswith(suffix) and len(metric) > len(suffix):
            return MetricWords(metric.removesuffix(suffix).replace("_", " "), unit)
    return MetricWords(metric.replace("_", " "), "")


def kind_word(kind: str, language: str) -> str:
    """The machine kind in ``language``: ``heat pump`` / ``varmepumpen``; a vendor kind by its own name in English.

    >>> kind_word("screw_chiller", "en"), kind_word("screw_chiller", "no")
    ('screw chiller', 'anlegget')
    """
    words = _KIND_WORDS.get(kind)
    if words is not None:
        return words.get(language, words["en"])
    return _GENERIC_KIND.get(language, kind.replace("_", " "))


def failure_threshold(fault_code: str) -> Threshold | None:
    """The failure criterion of ``fault_code`` (drawn on the ticket plot), or None when none is known."""
    criterion = FAILURE_CRITERIA.get(fault_code)  # type: ignore[call-overload]
    if criterion is None:
        return None
    return Threshold(criterion.metric, criterion.threshold, criterion.direction, criterion.description)
