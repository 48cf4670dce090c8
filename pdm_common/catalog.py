"""Shared vocabulary: the metrics each asset kind reports and the fault codes with their failure criteria.

The simulators inject these faults, the detector names them as ``probable_fault.code`` and estimates
the time until the failure criterion is crossed, and the bridge maps them to parts and checks.
Numbers come from ``reference/failure-physics.md`` (shared design folder); [S] marks a sourced value,
[E] an engineering assumption, as there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pdm_common.contracts import AssetKind

__all__ = [
    "FAILURE_CRITERIA",
    "FAULTS_BY_KIND",
    "METRICS",
    "SENSOR_FAULT",
    "FailureCriterion",
    "FaultCode",
    "MetricSpec",
    "is_operating",
]

SENSOR_FAULT = "sensor_fault"
"""The probable-fault code for a broken sensor; never a machine fault (DESIGN.md §3)."""


class FaultCode(StrEnum):
    """Machine faults the product diagnoses, by asset kind."""

    # heat pump
    REFRIGERANT_LEAK = "refrigerant_leak"
    COMPRESSOR_WEAR = "compressor_wear"
    FAN_MOTOR = "fan_motor"
    EVAPORATOR_ICING = "evaporator_icing"
    LOW_FLOW = "low_flow"
    EXPANSION_VALVE = "expansion_valve"
    # industrial pump
    BEARING_WEAR = "bearing_wear"
    CAVITATION = "cavitation"
    IMPELLER_WEAR = "impeller_wear"
    SEAL_LEAK = "seal_leak"
    MOTOR_OVERHEATING = "motor_overheating"
    # --- added by the simulator lane (issue #15; names fixed in TEAM.md), to fold into the profiles ---
    # heat pump: reversing-valve internal leak, and the EEV stuck open (``expansion_valve`` is the
    # restricted / stuck-closed valve)
    FOUR_WAY_VALVE_LEAK = "four_way_valve_leak"
    EEV_STUCK_OPEN = "eev_stuck_open"


FAULTS_BY_KIND: dict[AssetKind, tuple[FaultCode, ...]] = {
    AssetKind.HEAT_PUMP: (
        FaultCode.REFRIGERANT_LEAK,
        FaultCode.COMPRESSOR_WEAR,
        FaultCode.FAN_MOTOR,
        FaultCode.EVAPORATOR_ICING,
        FaultCode.LOW_FLOW,
        FaultCode.EXPANSION_VALVE,
        # --- added by the simulator lane (issue #15) ---
        FaultCode.FOUR_WAY_VALVE_LEAK,
        FaultCode.EEV_STUCK_OPEN,
    ),
    AssetKind.PUMP: (
        FaultCode.BEARING_WEAR,
        FaultCode.CAVITATION,
        FaultCode.IMPELLER_WEAR,
        FaultCode.SEAL_LEAK,
        FaultCode.MOTOR_OVERHEATING,
    ),
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One telemetry channel: its unit, normal operating range and measurement noise (1 sigma)."""

    name: str
    unit: str
    normal_low: float
    normal_high: float
    noise_sigma: float


METRICS: dict[AssetKind, tuple[MetricSpec, ...]] = {
    # Ranges and noise: failure-physics.md A1 table (8 kW R32 monobloc) [S]/[E].
    AssetKind.HEAT_PUMP: (
        MetricSpec("outdoor_temp_c", "°C", -30.0, 20.0, 0.1),
        MetricSpec("flow_temp_c", "°C", 25.0, 58.0, 0.1),
        MetricSpec("return_temp_c", "°C", 20.0, 53.0, 0.1),
        MetricSpec("discharge_temp_c", "°C", 40.0, 100.0, 0.3),
        MetricSpec("suction_pressure_bar", "bar", 2.0, 12.0, 0.05),
        MetricSpec("discharge_pressure_bar", "bar", 15.0, 37.0, 0.1),
        MetricSpec("compressor_current_a", "A", 0.0, 14.0, 0.1),
        MetricSpec("compressor_hz", "Hz", 0.0, 110.0, 0.0),
        MetricSpec("fan_rpm", "rpm", 0.0, 900.0, 5.0),
        MetricSpec("flow_lpm", "l/min", 12.0, 30.0, 0.3),
        # --- added by the simulator lane (issue #15) ---
        # Suction-line temperature at the compressor inlet = T_evap + superheat (failure-physics.md A1 table:
        # suction_temp, sigma 0.2 [E]); lets superheat be derived with the suction pressure. The range covers
        # evaporating at T_oa − 6…10 K down to the -30 °C of outdoor_temp_c.
        MetricSpec("suction_temp_c", "°C", -35.0, 20.0, 0.2),
    ),
    # 30-75 kW centrifugal pump set on a rigid base: failure-physics.md B1/B3 [S]/[E].
    AssetKind.PUMP: (
        MetricSpec("vibration_mm_s", "mm/s RMS", 0.5, 2.8, 0.1),
        MetricSpec("bearing_temp_c", "°C", 20.0, 75.0, 0.2),
        MetricSpec("motor_temp_c", "°C", 20.0, 110.0, 0.3),
        MetricSpec("motor_current_a", "A", 0.0, 130.0, 0.8),
        MetricSpec("suction_pressure_bar", "bar", 0.3, 2.0, 0.02),
        MetricSpec("discharge_pressure_bar", "bar", 0.0, 10.0, 0.05),
        MetricSpec("flow_m3_h", "m³/h", 0.0, 500.0, 2.0),
        MetricSpec("speed_rpm", "rpm", 0.0, 3000.0, 2.0),
        MetricSpec("seal_temp_c", "°C", 20.0, 70.0, 0.2),
        # --- added by the simulator lane (issue #15) ---
        # Bearing-condition features that rise before broadband RMS (failure-physics.md B2/B3 proposed
        # pump telemetry set [E]): kurtosis ≈ 3 healthy (Gaussian), sigma 0.2; envelope / HF acceleration
        # 0.1-0.5 g healthy, 10 % scatter (the simulator adds it relative to the value).
        MetricSpec("vibration_kurtosis", "-", 2.2, 4.2, 0.2),
        MetricSpec("vibration_envelope_g", "g", 0.05, 0.6, 0.01),
    ),
}
"""Operating-state flags (booleans) are not listed: ``defrost`` for heat pumps, ``running`` for pumps."""


@dataclass(frozen=True, slots=True)
class FailureCriterion:
    """The observable event that counts as the failure: ``metric`` crosses ``threshold``.

    The simulator makes the criterion true at the ground-truth failure time; the detector projects
    its trend onto the same criterion for the time-to-failure estimate.
    """

    metric: str
    direction: Literal["above", "below"]
    threshold: float
    description: str
    source: str

    def crossed(self, value: float) -> bool:
        """True when ``value`` is past the failure threshold.

        Only meaningful on samples where :func:`is_operating` is true: a stopped pump has no head
        and a heat pump in defrost has no fan speed, and neither is a failure.
        """
        return value >= self.threshold if self.direction == "above" else value <= self.threshold


def is_operating(kind: str, metrics: Mapping[str, float | bool | None]) -> bool:
    """True when the asset is in its productive state, where failure criteria apply.

    Heat pump: compressor running (``compressor_hz`` > 0) and not defrosting.
    Pump: ``running`` flag true, or, without the flag, shaft speed above 100 rpm.
    """
    if kind == AssetKind.HEAT_PUMP:
        hz = metrics.get("compressor_hz")
        compressor_on = isinstance(hz, float | int) and not isinstance(hz, bool) and hz > 0
        return compressor_on and metrics.get("defrost") is not True
    running = metrics.get("running")
    if isinstance(running, bool):
        return running
    speed = metrics.get("speed_rpm")
    return isinstance(speed, float | int) and not isinstance(speed, bool) and speed > 100


FAILURE_CRITERIA: dict[FaultCode, FailureCriterion] = {
    FaultCode.REFRIGERANT_LEAK: FailureCriterion(
        "discharge_temp_c", "above", 115.0, "discharge-temperature trip (Midea P4: insufficient refrigerant)",
        "[S] Midea ATOM P4 trip at 115 °C; Technibel trip 115 °C"),
    FaultCode.COMPRESSOR_WEAR: FailureCriterion(
        "compressor_current_a", "above", 16.0, "compressor over-current trip",
        "[E] 8 kW single-phase class: ~14 A max normal, trip ~15 % above"),
    FaultCode.FAN_MOTOR: FailureCriterion(
        "fan_rpm", "below", 150.0, "outdoor fan lock (stall), then low-pressure trip",
        "[E] fan lock error when speed collapses at full command"),
    FaultCode.EVAPORATOR_ICING: FailureCriterion(
        "suction_pressure_bar", "below", 1.5, "low-pressure trip on a frozen coil",
        "[S] Carrier 38VMA P2 trip at 0.05 MPa g (≈1.5 bar abs)"),
    FaultCode.LOW_FLOW: FailureCriterion(
        "flow_lpm", "below", 9.0, "water flow-switch alarm",
        "[S~] Ferroli Omnia flow-switch alarm; [E] switch point ≈ 50 % of design flow"),
    FaultCode.EXPANSION_VALVE: FailureCriterion(
        "discharge_temp_c", "above", 115.0, "discharge-temperature trip (restricted EEV)",
        "[S] Midea/Technibel discharge trip at 115 °C"),
    FaultCode.BEARING_WEAR: FailureCriterion(
        "vibration_mm_s", "above", 4.5, "ISO 10816-3 group 2 rigid, zone D",
        "[S] ISO 10816-3 C/D boundary 4.5 mm/s (grayvolt.ai)"),
    FaultCode.CAVITATION: FailureCriterion(
        "discharge_pressure_bar", "below", 3.5, "head collapse: cannot meet process duty",
        "[E] ≈ −30 % of a 5 bar duty point"),
    FaultCode.IMPELLER_WEAR: FailureCriterion(
        "discharge_pressure_bar", "below", 4.5, "−10 % head at duty speed",
        "[S~] pumpworks/flowmetrics: failure at −10 % head"),
    FaultCode.SEAL_LEAK: FailureCriterion(
        "seal_temp_c", "above", 95.0, "seal-chamber over-temperature / leak-detector trip",
        "[E] ambient + 10-30 K normal; dry-running faces exceed 90 °C"),
    FaultCode.MOTOR_OVERHEATING: FailureCriterion(
        "motor_temp_c", "above", 140.0, "winding thermal trip",
        "[S~] class F insulation, 80 K rise limit by resistance; [E] trip at 140 °C"),
    # --- added by the simulator lane (issue #15) ---
    FaultCode.FOUR_WAY_VALVE_LEAK: FailureCriterion(
        "discharge_temp_c", "above", 115.0,
        "discharge-temperature trip: hot gas bypassing to suction superheats the suction gas",
        "[S] Midea ATOM P4 / Technibel trip at 115 °C; [S] ACHR News, launchmyhvac KB (bleed-through: suction T "
        "and discharge T up, capacity down)"),
    FaultCode.EEV_STUCK_OPEN: FailureCriterion(
        "compressor_current_a", "above", 16.0,
        "compressor damage from liquid flood-back, then over-current / locked-rotor trip",
        "[S~] failure-physics.md A2: stuck-open EEV ends in compressor damage (flooding), ACHR News; "
        "[E] over-current trip ~15 % above the 14 A normal maximum, as compressor_wear"),
}
